//! E2/E3: `GET api/v1/users`, the user sync.
//!
//! Answers from the database (one page at a time), in the paginated shape of Grafana Cloud's API
//! (`count`, `next`, `previous`, `results`, ...). `next` and `previous` are absolute URLs.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiError, AppState, prefix_of};
use crate::directory::{Listed, Role, User, email_key};

/// Largest and default page size.
const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, Default)]
struct Query {
    page: usize,
    perpage: usize,
    short: bool,
    roles: Vec<Role>,
    email: Option<String>,
    username: Option<String>,
    /// Every parameter as received, to rebuild `next`/`previous`.
    raw: Vec<(String, String)>,
}

fn parse_query(query: Option<&str>) -> Result<Query, ApiError> {
    let mut q = Query {
        page: 1,
        perpage: MAX_PAGE_SIZE,
        ..Query::default()
    };
    let mut bad_roles = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (key, mut value) = (key.into_owned(), value.into_owned());
        match key.as_str() {
            "page" => {
                q.page = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::field("page", "A valid integer is required."))?
                    .max(1) as usize;
            }
            "perpage" | "page_size" => {
                q.perpage = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::field("perpage", "A valid integer is required."))?
                    .clamp(1, MAX_PAGE_SIZE as i64) as usize;
            }
            "short" => {
                q.short = matches!(
                    value.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes"
                )
            }
            "roles" | "role" => match Role::from_code(&value) {
                Some(role) => q.roles.push(role),
                None => bad_roles.push(format!(
                    "Select a valid choice. {value} is not one of the available choices."
                )),
            },
            "email" => {
                // OnCall does not URL-encode the email: `a+b@x.com` arrives as `a b@x.com`.
                value = value.trim().replace(' ', "+");
                q.email = Some(value.clone());
            }
            "username" => q.username = Some(value.trim().to_string()),
            _ => {}
        }
        q.raw.push((key, value));
    }
    if !bad_roles.is_empty() {
        return Err(ApiError::Fields(
            [("roles", bad_roles)].into_iter().collect(),
        ));
    }
    Ok(q)
}

#[derive(Serialize)]
struct ShortUser<'a> {
    id: &'a str,
    grafana_id: i64,
    email: &'a str,
    username: &'a str,
    role: &'static str,
    is_phone_number_verified: bool,
}

/// The full form: the short one and the profile fields.
#[derive(Serialize)]
struct LongUser<'a> {
    #[serde(flatten)]
    short: ShortUser<'a>,
    name: &'a str,
    timezone: &'a str,
    teams: [&'a str; 0],
    slack: Option<()>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum UserOut<'a> {
    Short(ShortUser<'a>),
    Long(LongUser<'a>),
}

impl<'a> UserOut<'a> {
    fn new(u: &'a Listed, short: bool) -> UserOut<'a> {
        let brief = ShortUser {
            id: &u.id,
            grafana_id: u.seq,
            email: &u.email,
            username: &u.username,
            role: u.role.as_str(),
            is_phone_number_verified: u.verified,
        };
        if short {
            UserOut::Short(brief)
        } else {
            UserOut::Long(LongUser {
                short: brief,
                name: &u.name,
                timezone: &u.timezone,
                teams: [],
                slack: None,
            })
        }
    }
}

#[derive(Serialize)]
struct Page<'a> {
    count: usize,
    next: Option<String>,
    previous: Option<String>,
    results: Vec<UserOut<'a>>,
    page_size: usize,
    current_page_number: usize,
    total_pages: usize,
}

/// How many users the query's roles, email and username select, and page `page` of them.
async fn select(
    state: &AppState,
    q: &Query,
    page: usize,
) -> Result<(usize, Vec<Listed>), ApiError> {
    let offset = (page - 1) * q.perpage;
    let username = q.username.as_deref().map(str::to_lowercase);
    let matches = |u: &User| {
        (q.roles.is_empty() || q.roles.contains(&u.role))
            && username
                .as_deref()
                .is_none_or(|name| u.username.to_lowercase() == name)
    };
    // The few people an email or an ASCII username names come from an index; the roles and
    // the exact match are checked here. Case folding beyond ASCII needs every row read.
    let candidates: Vec<User> = match (q.email.as_deref(), username.as_deref()) {
        (Some(email), _) => state
            .directory
            .by_email(&email_key(email))
            .await?
            .map(|u| (*u).clone())
            .into_iter()
            .collect(),
        (None, Some(name)) if name.is_ascii() => state.directory.by_username(name).await?,
        (None, Some(_)) => {
            let page = state.directory.scan(matches, offset, q.perpage).await?;
            return Ok((page.count, page.users.iter().map(Listed::from).collect()));
        }
        (None, None) => {
            return Ok(state
                .directory
                .listing_by_roles(&q.roles, offset, q.perpage)
                .await?);
        }
    };
    let users: Vec<User> = candidates.into_iter().filter(|u| matches(u)).collect();
    Ok((
        users.len(),
        users
            .iter()
            .skip(offset)
            .take(q.perpage)
            .map(Listed::from)
            .collect(),
    ))
}

/// Lists users page by page, filtered by roles, email and username.
pub async fn list(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = parse_query(uri.query())?;
    let (count, mut users) = select(&state, &q, q.page).await?;
    let total_pages = count.div_ceil(q.perpage).max(1);
    // Past the end answers the last page, as the engine expects, never a 404.
    let page = q.page.min(total_pages);
    if page != q.page {
        users = select(&state, &q, page).await?.1;
    }
    let results = users.iter().map(|u| UserOut::new(u, q.short)).collect();

    let link = |target: usize| {
        let root = state.public_root(&headers, &prefix_of(&original, &uri));
        let mut ser = form_urlencoded::Serializer::new(String::new());
        let mut has_page = false;
        for (k, v) in &q.raw {
            if k == "page" {
                if !has_page {
                    ser.append_pair("page", &target.to_string());
                    has_page = true;
                }
            } else {
                ser.append_pair(k, v);
            }
        }
        if !has_page {
            ser.append_pair("page", &target.to_string());
        }
        let path = uri.path().trim_start_matches('/');
        format!("{root}{path}?{}", ser.finish())
    };
    let body = Page {
        count,
        next: (page < total_pages).then(|| link(page + 1)),
        previous: (page > 1).then(|| link(page - 1)),
        results,
        page_size: q.perpage,
        current_page_number: page,
        total_pages,
    };
    // Serialised here because the page borrows the users read.
    let bytes = serde_json::to_vec(&body)
        .map_err(|e| ApiError::Internal(format!("cannot encode users page: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_space_becomes_plus() {
        let q =
            parse_query(Some("email=john oncall@x.com&roles=0&roles=1&short=true")).expect("ok");
        assert_eq!(q.email.as_deref(), Some("john+oncall@x.com"));
        let q = parse_query(Some("email=john+oncall@x.com")).expect("ok");
        assert_eq!(q.email.as_deref(), Some("john+oncall@x.com"));
        let q = parse_query(Some("email=john%2Boncall@x.com")).expect("ok");
        assert_eq!(q.email.as_deref(), Some("john+oncall@x.com"));
    }

    #[test]
    fn roles_are_ored_and_checked() {
        let q = parse_query(Some("roles=0&roles=1")).expect("ok");
        assert_eq!(q.roles, vec![Role::Admin, Role::Editor]);
        assert!(matches!(
            parse_query(Some("roles=7")),
            Err(ApiError::Fields(_))
        ));
    }

    #[test]
    fn paging_parameters_are_bounded() {
        let q = parse_query(Some("page=0&perpage=1000")).expect("ok");
        assert_eq!((q.page, q.perpage), (1, 100));
        assert!(parse_query(Some("page=abc")).is_err());
    }
}
