//! A person's profile: at the paths OnCall links to and at `/console/people/<id>`. Phone
//! numbers, contacts, time zone, preferred route, a test notification, phone verification,
//! and the last notifications with their attempts.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::codes::{self, Purpose};
use super::csrf::{Posted, tokened};
use super::render::ctx;
use super::session::Session;
use super::{Base, ConsoleError, render};
use crate::cloud_api::AppState;
use crate::directory::{User, UserPatch, parse_phone};
use crate::notify::{EventFilter, Kind, NewNotification, events};

/// The query of OnCall's links: `?p=1&id=<id>`, and `?page=users&p=1&id=<id>` before 2024.
#[derive(Debug, Default, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    id: Option<String>,
}

/// The fields of the profile's forms.
#[derive(Debug, Default, Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

tokened!(ProfileForm);

impl ProfileForm {
    /// A call when the form asks for one, else an SMS.
    fn kind(&self) -> Kind {
        match self.kind.as_deref() {
            Some("call") => Kind::Call,
            _ => Kind::Sms,
        }
    }
}

/// How many recent notifications the profile lists.
const RECENT: usize = 20;

/// Finds a person by public id, email or OnCall's `grafana_id` (the directory's sequence).
async fn find(state: &AppState, id: &str) -> Result<Option<Arc<User>>, ConsoleError> {
    let directory = &state.directory;
    let id = id.trim();
    if let Some(user) = directory.by_id(id).await? {
        return Ok(Some(user));
    }
    if let Some(user) = directory.by_email(id).await? {
        return Ok(Some(user));
    }
    Ok(match id.parse::<i64>() {
        Ok(seq) => directory.by_seq(seq).await?.map(Arc::new),
        Err(_) => None,
    })
}

/// The person `id` names, if the session may see them; otherwise the page to answer.
async fn visible(
    state: &AppState,
    base: &Base,
    session: &Session,
    id: &str,
) -> Result<Arc<User>, Box<Response>> {
    match find(state, id).await.map_err(|e| Box::new(e.page(base)))? {
        Some(user) if session.may_see(&user) => Ok(user),
        Some(_) => Err(Box::new(render::message(
            StatusCode::FORBIDDEN,
            base,
            "Not your profile",
            "You can only see your own profile.",
        ))),
        None => Err(Box::new(render::message(
            StatusCode::NOT_FOUND,
            base,
            "Not found",
            "There is no such person in the directory.",
        ))),
    }
}

/// A form posted on a person's profile page: the page's base, the person (whom the session
/// may see), the session and the fields, the form token checked; anything else answers with
/// its page.
pub struct ProfilePosted(Base, Arc<User>, Session, ProfileForm);

impl FromRequest<AppState> for ProfilePosted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Ok(base) = Base::from_request_parts(&mut parts, state).await;
        let id = match Path::<String>::from_request_parts(&mut parts, state).await {
            Ok(Path(id)) => id,
            Err(e) => return Err(e.into_response()),
        };
        let Posted { session, form } =
            Posted::<ProfileForm>::from_request(Request::from_parts(parts, body), state).await?;
        let user = visible(state, &base, &session, &id)
            .await
            .map_err(|page| *page)?;
        Ok(ProfilePosted(base, user, session, form))
    }
}

/// `GET a/grafana-oncall-app/users?p=1&id=<id>` (and the IRM and pre-2024 forms).
pub async fn oncall_link(
    State(state): State<AppState>,
    base: Base,
    session: Session,
    Query(q): Query<LinkQuery>,
) -> Response {
    match q.id.as_deref().filter(|id| !id.trim().is_empty()) {
        Some(id) => show(&state, &base, &session, id, None).await,
        None => match &session.user {
            Some(user) => show(&state, &base, &session, &user.id.clone(), None).await,
            None => base.redirect("/console/people"),
        },
    }
}

/// What a form did, told by the page it redirects to (`?done=`): a fixed word, so a link
/// cannot make the page say anything else.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /console/people/<id>`.
pub async fn page(
    State(state): State<AppState>,
    base: Base,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let user = match visible(&state, &base, &session, &id).await {
        Ok(user) => user,
        Err(page) => return *page,
    };
    let done = match q.done.as_deref() {
        Some("test") => Some("Test sent to the queue; it shows below once delivered.".to_string()),
        Some("code") => Some("A code is on its way. Type it below.".to_string()),
        Some("verified") => user
            .phone_number
            .as_ref()
            .map(|number| format!("{number} is verified.")),
        _ => None,
    };
    show_user(
        &state,
        &base,
        &session,
        user,
        done.as_deref().map(|text| ("ok", text)),
    )
    .await
}

/// A form's success: back to the profile with a GET, so reloading it sends nothing again.
fn done(base: &Base, user: &User, what: &str) -> Response {
    base.redirect(&format!(
        "/console/people/{}?done={what}",
        percent_encoding::utf8_percent_encode(&user.id, percent_encoding::NON_ALPHANUMERIC)
    ))
}

async fn show(
    state: &AppState,
    base: &Base,
    session: &Session,
    id: &str,
    notice: Option<(&str, &str)>,
) -> Response {
    match visible(state, base, session, id).await {
        Ok(user) => show_user(state, base, session, user, notice).await,
        Err(page) => *page,
    }
}

/// The profile again, saying why a form was refused (400).
async fn refused(
    state: &AppState,
    base: &Base,
    session: &Session,
    user: Arc<User>,
    reason: &str,
) -> Response {
    show_user(state, base, session, user, Some(("error", reason))).await
}

async fn show_user(
    state: &AppState,
    base: &Base,
    session: &Session,
    user: Arc<User>,
    notice: Option<(&str, &str)>,
) -> Response {
    let filter = EventFilter {
        user: Some(user.email.clone()),
        limit: RECENT,
        ..EventFilter::default()
    };
    let recent = match events::list(&state.store, &filter).await {
        Ok(recent) => recent,
        Err(e) => return ConsoleError::from(e).page(base),
    };
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT target FROM console_codes WHERE user_id = $1 AND purpose = 'phone' AND used = 0 AND expires_at > $2 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(&user.id)
    .bind(crate::store::now_ms())
    .fetch_optional(state.store.pool())
    .await
    .unwrap_or_default();
    let status = match notice {
        Some(("error", _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    render::page(
        status,
        base,
        "profile.html",
        ctx! {
            title => if user.name.is_empty() { user.email.clone() } else { user.name.clone() },
            session => session.view(),
            user => user.as_ref(),
            verified => user.phone_verified(),
            route => user.contacts.get("route"),
            language => user.language,
            recent,
            pending,
            notice => notice.map(|(kind, text)| ctx! { kind, text }),
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}

/// `POST /console/people/<id>/test`: a test call or SMS through the normal queue and limits.
pub async fn send_test(
    State(state): State<AppState>,
    ProfilePosted(base, user, session, f): ProfilePosted,
) -> Response {
    let kind = f.kind();
    if !user.phone_verified() && !user.contacts.contains_key("route") {
        return refused(
            &state,
            &base,
            &session,
            user,
            "There is no phone number or preferred route to send a test to.",
        )
        .await;
    }
    let message = format!(
        "Test {kind} from oncall-relay, asked for in the console at {}",
        crate::store::format_ms(crate::store::now_ms())
    );
    if let Err(e) = state.gate.admit(kind, &user.id, &message).await {
        let text = e.to_string();
        return refused(&state, &base, &session, user, &text).await;
    }
    match state
        .acceptor
        .accept(NewNotification::to_user(kind, &user, message))
        .await
    {
        Ok(()) => done(&base, &user, "test"),
        Err(e) => ConsoleError::from(e).page(&base),
    }
}

/// `POST /console/people/<id>/phone`: sends a code to the number entered, by SMS or call.
pub async fn send_phone_code(
    State(state): State<AppState>,
    ProfilePosted(base, user, session, f): ProfilePosted,
) -> Response {
    let number = match parse_phone(f.phone.as_deref().unwrap_or("")) {
        Ok(number) => number,
        Err(e) => {
            let text = e.to_string();
            return refused(&state, &base, &session, user, &text).await;
        }
    };
    let kind = f.kind();
    let code = match codes::issue(
        &state.store,
        &state.console.settings,
        Purpose::Phone,
        &user.id,
        &number,
    )
    .await
    {
        Ok(code) => code,
        Err(ConsoleError::RateLimited) => {
            return refused(
                &state,
                &base,
                &session,
                user,
                "Too many codes were sent in the last hour; try again later.",
            )
            .await;
        }
        Err(e) => return e.page(&base),
    };
    let spaced: Vec<String> = code.chars().map(String::from).collect();
    let message = match kind {
        Kind::Call => format!(
            "Your oncall-relay verification code is {}",
            spaced.join(" ")
        ),
        _ => format!("Your oncall-relay verification code is {code}"),
    };
    // Addressed to the number, not the person: their preferred route (a chat, say) must not
    // carry the code, or it would prove nothing about the number.
    let notification = NewNotification {
        email: user.email.clone(),
        name: user.name.clone(),
        phone_number: Some(number.clone()),
        ..NewNotification::to_nobody(kind, message)
    };
    if let Err(e) = state.acceptor.accept(notification).await {
        return ConsoleError::from(e).page(&base);
    }
    done(&base, &user, "code")
}

/// `POST /console/people/<id>/phone/confirm`: the code typed back; the number is saved.
pub async fn confirm_phone(
    State(state): State<AppState>,
    ProfilePosted(base, user, session, f): ProfilePosted,
) -> Response {
    let code = f.code.as_deref().unwrap_or("");
    let number = match codes::redeem(
        &state.store,
        &state.console.settings,
        Purpose::Phone,
        &user.id,
        code,
    )
    .await
    {
        Ok(number) => number,
        Err(ConsoleError::WrongCode) => {
            return refused(
                &state,
                &base,
                &session,
                user,
                "That code is wrong or has expired.",
            )
            .await;
        }
        Err(e) => return e.page(&base),
    };
    let patch = UserPatch {
        phone_number: Some(Some(number.clone())),
        ..UserPatch::default()
    };
    if let Err(e) = state.directory.update(&user.id, patch).await {
        return ConsoleError::from(e).page(&base);
    }
    done(&base, &user, "verified")
}
