//! Admin pages for the directory: the list with search, adding and editing a person, and a
//! CSV import that previews what it will change before it does.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::csrf::{AdminPosted, Posted, tokened};
use super::render::ctx;
use super::session::Admin;
use super::{Base, ConsoleError, render};
use crate::cloud_api::AppState;
use crate::directory::{ImportFormat, NewUser, Page, User, UserPatch, parse_import};

/// People per page of the list.
const PER_PAGE: usize = 50;

/// The list's query: a search and a page number (1-based).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<String>,
    /// An import's counts, after it redirected here.
    #[serde(default)]
    added: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    unchanged: Option<String>,
}

/// The person form's fields, as text (a bad value is a message on the form, never a 4xx).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct PersonForm {
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    active: Option<String>,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    route: String,
    /// Other contacts, one `key = value` a line.
    #[serde(default)]
    contacts: String,
}

tokened!(PersonForm);

impl PersonForm {
    fn of(user: &User) -> PersonForm {
        let contacts = user
            .contacts
            .iter()
            .filter(|(k, _)| {
                k.as_str() != "route" && k.as_str() != crate::directory::ONCALL_TOKEN_CONTACT
            })
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join("\n");
        PersonForm {
            csrf: None,
            email: user.email.clone(),
            name: user.name.clone(),
            username: user.username.clone(),
            phone_number: user.phone_number.clone().unwrap_or_default(),
            role: user.role.as_str().to_string(),
            active: user.active.then(|| "on".into()),
            timezone: user.timezone.clone(),
            language: user.language.clone().unwrap_or_default(),
            route: user.contacts.get("route").cloned().unwrap_or_default(),
            contacts,
        }
    }

    /// The contacts the form sets, `route` included; `previous` keys absent from the form
    /// are removed (an empty value removes a key).
    fn contacts(&self, previous: Option<&User>) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = previous
            .map(|u| {
                u.contacts
                    .keys()
                    .filter(|k| k.as_str() != crate::directory::ONCALL_TOKEN_CONTACT)
                    .map(|k| (k.clone(), String::new()))
                    .collect()
            })
            .unwrap_or_default();
        for line in self.contacts.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let key = k.trim();
                if !key.is_empty() {
                    out.insert(key.to_string(), v.trim().to_string());
                }
            }
        }
        out.insert("route".into(), self.route.trim().to_string());
        if previous.is_none() {
            out.retain(|_, v| !v.is_empty());
        }
        out
    }
}

/// Whether `hay` contains `needle` (already lower-case), ignoring case; without allocating
/// for ASCII needles, since a search runs over the whole directory.
fn contains_folded(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        true
    } else if needle.is_ascii() {
        let n = needle.as_bytes();
        hay.len() >= n.len()
            && hay
                .as_bytes()
                .windows(n.len())
                .any(|w| w.eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// One page of the people whose email, name, username or phone contains `needle` (already
/// lower-case), or whose id it is; everyone for an empty needle.
async fn search(
    state: &AppState,
    needle: &str,
    page: usize,
) -> Result<Page, crate::directory::DirectoryError> {
    let offset = (page - 1) * PER_PAGE;
    if needle.is_empty() {
        return state.directory.page_by_roles(&[], offset, PER_PAGE).await;
    }
    // The database folds ASCII case alike everywhere; other letters are compared here.
    if needle.is_ascii() {
        return state.directory.search(needle, offset, PER_PAGE).await;
    }
    let matches = |u: &User| {
        contains_folded(&u.email, needle)
            || contains_folded(&u.name, needle)
            || contains_folded(&u.username, needle)
            || u.phone_number
                .as_deref()
                .is_some_and(|p| p.contains(needle))
            || u.id.eq_ignore_ascii_case(needle)
    };
    state.directory.scan(matches, offset, PER_PAGE).await
}

/// `GET /console/people?q=&page=`: searched and paged by the database (a search reads every
/// row once, holding only the page).
pub async fn list(
    State(state): State<AppState>,
    base: Base,
    Admin(session): Admin,
    Query(q): Query<ListQuery>,
) -> Response {
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    // After an import: its counts, read as numbers so a link cannot make the page say more.
    let count = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    let imported = match (count(&q.added), count(&q.updated), count(&q.unchanged)) {
        (Some(added), Some(updated), Some(unchanged)) => Some(format!(
            "Imported: {added} added, {updated} updated, {unchanged} unchanged."
        )),
        _ => None,
    };
    let wanted = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut found = match search(&state, &needle, wanted).await {
        Ok(found) => found,
        Err(e) => return ConsoleError::from(e).page(&base),
    };
    let pages = found.count.div_ceil(PER_PAGE).max(1);
    let page = wanted.min(pages);
    if page != wanted {
        // Past the end shows the last page.
        found = match search(&state, &needle, page).await {
            Ok(found) => found,
            Err(e) => return ConsoleError::from(e).page(&base),
        };
    }
    render::page(
        StatusCode::OK,
        &base,
        "people.html",
        ctx! {
            title => "People", session => session.view(), people => found.users,
            total => found.count, page, pages, q => q.q.unwrap_or_default(),
            notice => imported.map(|text| ctx! { kind => "ok", text }),
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}

fn form_page(
    base: &Base,
    session: &super::Session,
    status: StatusCode,
    id: Option<&str>,
    form: &PersonForm,
    error: Option<String>,
) -> Response {
    render::page(
        status,
        base,
        "person_form.html",
        ctx! {
            title => if id.is_some() { "Edit person" } else { "Add a person" },
            session => session.view(), id, form, error,
            roles => ["admin", "editor", "viewer", "none"],
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}

/// `GET /console/people/new`.
pub async fn new_form(base: Base, Admin(session): Admin) -> Response {
    let form = PersonForm {
        role: "editor".into(),
        active: Some("on".into()),
        timezone: "UTC".into(),
        ..PersonForm::default()
    };
    form_page(&base, &session, StatusCode::OK, None, &form, None)
}

/// `POST /console/people/new`.
pub async fn create(
    State(state): State<AppState>,
    base: Base,
    AdminPosted(Posted { session, form: f }): AdminPosted<PersonForm>,
) -> Response {
    let new = NewUser {
        id: None,
        email: f.email.trim().to_string(),
        name: non_empty(&f.name),
        username: non_empty(&f.username),
        phone_number: non_empty(&f.phone_number),
        role: non_empty(&f.role),
        active: Some(f.active.is_some()),
        timezone: non_empty(&f.timezone),
        language: non_empty(&f.language),
        contacts: f.contacts(None),
    };
    match state.directory.add(new).await {
        Ok(user) => base.redirect(&format!("/console/people/{}", user.id)),
        Err(e) => saved_or_not(&base, &session, None, &f, e.into()),
    }
}

/// A person's mistake shows on the form again; anything else is an error page.
fn saved_or_not(
    base: &Base,
    session: &super::Session,
    id: Option<&str>,
    f: &PersonForm,
    e: ConsoleError,
) -> Response {
    use crate::directory::DirectoryError;
    match e {
        ConsoleError::Directory(
            e @ (DirectoryError::Invalid { .. } | DirectoryError::Duplicate { .. }),
        ) => form_page(
            base,
            session,
            StatusCode::BAD_REQUEST,
            id,
            f,
            Some(e.to_string()),
        ),
        other => other.page(base),
    }
}

/// `GET /console/people/<id>/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    base: Base,
    Admin(session): Admin,
    Path(id): Path<String>,
) -> Response {
    match state.directory.get(&id).await {
        Ok(user) => form_page(
            &base,
            &session,
            StatusCode::OK,
            Some(&user.id),
            &PersonForm::of(&user),
            None,
        ),
        Err(e) => ConsoleError::from(e).page(&base),
    }
}

/// `POST /console/people/<id>/edit`: an empty phone removes the number.
pub async fn update(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
    AdminPosted(Posted { session, form: f }): AdminPosted<PersonForm>,
) -> Response {
    let current = match state.directory.get(&id).await {
        Ok(user) => user,
        Err(e) => return ConsoleError::from(e).page(&base),
    };
    let patch = UserPatch {
        email: Some(f.email.trim().to_string()),
        name: Some(f.name.trim().to_string()),
        username: non_empty(&f.username),
        phone_number: Some(non_empty(&f.phone_number)),
        role: non_empty(&f.role),
        active: Some(f.active.is_some()),
        timezone: non_empty(&f.timezone),
        // Empty removes it.
        language: Some(f.language.trim().to_string()),
        contacts: f.contacts(Some(&current)),
    };
    match state.directory.update(&current.id, patch).await {
        Ok(user) => base.redirect(&format!("/console/people/{}", user.id)),
        Err(e) => saved_or_not(&base, &session, Some(&current.id), &f, e.into()),
    }
}

/// The import form: the CSV text, and whether the preview was confirmed.
#[derive(Debug, Default, Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    csv: String,
    #[serde(default)]
    confirm: Option<String>,
}

tokened!(ImportForm);

/// One row of the preview: what the import will do to a person.
#[derive(Debug, Serialize)]
struct Planned {
    email: String,
    action: &'static str,
    changes: Vec<String>,
}

/// `POST /console/people/import`: without `confirm`, a preview; with it, the import.
pub async fn import(
    State(state): State<AppState>,
    base: Base,
    AdminPosted(Posted { session, form: f }): AdminPosted<ImportForm>,
) -> Response {
    let rows = match parse_import(&f.csv, ImportFormat::Csv, "the pasted CSV") {
        Ok(rows) => rows,
        Err(e) => {
            return render::message(
                StatusCode::BAD_REQUEST,
                &base,
                "Cannot read the CSV",
                &e.to_string(),
            );
        }
    };
    if f.confirm.is_some() {
        return match state.directory.import(rows).await {
            // Back to the list with a GET, so reloading it does not import again.
            Ok(report) => base.redirect(&format!(
                "/console/people?added={}&updated={}&unchanged={}",
                report.added, report.updated, report.unchanged
            )),
            Err(e) => ConsoleError::from(e).page(&base),
        };
    }
    let mut plan: Vec<Planned> = Vec::with_capacity(rows.len());
    for row in &rows {
        let user = match state.directory.by_email(&row.email).await {
            Ok(user) => user,
            Err(e) => return ConsoleError::from(e).page(&base),
        };
        plan.push(match user {
            None => Planned {
                email: row.email.clone(),
                action: "add",
                changes: Vec::new(),
            },
            Some(user) => {
                let mut changes = Vec::new();
                let mut differs = |field: &str, new: Option<&String>, old: &str| {
                    if let Some(new) = new.filter(|n| n.as_str() != old) {
                        changes.push(format!("{field}: {old} → {new}"));
                    }
                };
                differs("name", row.name.as_ref(), &user.name);
                differs("username", row.username.as_ref(), &user.username);
                differs(
                    "phone",
                    row.phone_number.as_ref(),
                    user.phone_number.as_deref().unwrap_or(""),
                );
                differs("role", row.role.as_ref(), user.role.as_str());
                differs("timezone", row.timezone.as_ref(), &user.timezone);
                if let Some(active) = row.active.filter(|a| *a != user.active) {
                    changes.push(format!("active: {} → {active}", user.active));
                }
                let action = if changes.is_empty() {
                    "unchanged"
                } else {
                    "update"
                };
                Planned {
                    email: row.email.clone(),
                    action,
                    changes,
                }
            }
        });
    }
    render::page(
        StatusCode::OK,
        &base,
        "people.html",
        ctx! {
            title => "Import preview", session => session.view(), plan, csv => f.csv,
            people => Vec::<User>::new(), total => 0, page => 1, pages => 1, q => "",
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}

#[cfg(test)]
mod tests {
    use super::contains_folded;

    #[test]
    fn search_ignores_case() {
        assert!(contains_folded("Alice@Example.com", "alice@ex"));
        assert!(contains_folded("Zoë Ünal", "ünal"));
        assert!(!contains_folded("bob", "bobby"));
        assert!(contains_folded("", ""));
    }
}
