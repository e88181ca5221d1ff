//! Validation of user fields: email, phone number, public id, contact keys, and whole users.

use super::{DirectoryError, MAX_PUBLIC_ID_LEN, NewUser, Role, User, UserPatch};
use crate::store::now_ms;

/// Validates an email address and returns it trimmed.
pub fn parse_email(raw: &str) -> Result<String, DirectoryError> {
    let email = raw.trim();
    let invalid = |message: &str| DirectoryError::Invalid {
        field: "email",
        message: message.to_string(),
    };
    if email.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if email.len() > 254 {
        return Err(invalid("longer than 254 characters"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("must contain `@`"));
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(invalid("must look like name@example.com"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces"));
    }
    Ok(email.to_string())
}

/// Validates a phone number and normalises it to E.164 (`+4930123456`).
pub fn parse_phone(raw: &str) -> Result<String, DirectoryError> {
    let trimmed = raw.trim();
    let invalid = |message: String| DirectoryError::Invalid {
        field: "phone_number",
        message,
    };
    // `00` is the international prefix in most of the world.
    let international = match trimmed.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => trimmed.to_string(),
    };
    if !international.starts_with('+') {
        return Err(invalid(format!(
            "`{trimmed}` needs a country code, e.g. +49 30 123456"
        )));
    }
    let number = phonenumber::parse(None, &international)
        .map_err(|e| invalid(format!("`{trimmed}` is not a phone number ({e})")))?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid(format!("`{trimmed}` is not a valid phone number")));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Validates a public id: 1 to 20 letters, digits, `-` or `_`.
pub fn parse_public_id(raw: &str) -> Result<String, DirectoryError> {
    let id = raw.trim();
    if !is_word(id, MAX_PUBLIC_ID_LEN) {
        return Err(DirectoryError::Invalid {
            field: "id",
            message: format!("`{id}` must be 1 to {MAX_PUBLIC_ID_LEN} letters, digits, `-` or `_`"),
        });
    }
    Ok(id.to_string())
}

/// A fresh public id: `U` and 12 characters of an unambiguous alphabet.
pub fn generate_public_id() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(13);
    id.push('U');
    for _ in 0..12 {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

/// Lower-cased email used for case-insensitive matching.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// An immutable view of the whole directory.
/// Validates a contact key: lower-case letters, digits, `_` and `-` (`telegram`, `email`, `route`).
pub fn parse_contact_key(raw: &str) -> Result<String, DirectoryError> {
    let key = raw.trim().to_ascii_lowercase();
    if !is_word(&key, 40) {
        return Err(DirectoryError::Invalid {
            field: "contacts",
            message: format!("`{raw}` is not a contact name (letters, digits, `_`, `-`)"),
        });
    }
    Ok(key)
}

/// The trimmed text, unless it is absent or blank.
pub(super) fn non_blank(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

/// Whether `text` is 1 to `max` ASCII letters, digits, `-` and `_`.
fn is_word(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A short BCP 47 tag: a 2–3 letter language, optionally a script (`Latn`) and a region
/// (`BR`, `419`), written in their usual case (`pt-BR`, `sr-Latn`).
pub fn parse_language(raw: &str) -> Result<String, DirectoryError> {
    let invalid = || DirectoryError::Invalid {
        field: "language",
        message: format!("`{raw}` is not a language tag like `de` or `pt-BR`"),
    };
    let mut parts = raw.trim().split(['-', '_']);
    let language = parts
        .next()
        .filter(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    let mut tag = language.ok_or_else(invalid)?.to_ascii_lowercase();
    let mut seen_region = false;
    for (i, part) in parts.enumerate() {
        let script = i == 0 && part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic());
        let region = (part.len() == 2 && part.chars().all(|c| c.is_ascii_alphabetic()))
            || (part.len() == 3 && part.chars().all(|c| c.is_ascii_digit()));
        if script {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            tag.push('-');
            tag.extend(first);
            tag.push_str(&chars.as_str().to_ascii_lowercase());
        } else if region && !seen_region {
            seen_region = true;
            tag.push('-');
            tag.push_str(&part.to_ascii_uppercase());
        } else {
            return Err(invalid());
        }
    }
    Ok(tag)
}

pub(super) fn validate_new(new: NewUser) -> Result<User, DirectoryError> {
    let email = parse_email(&new.email)?;
    let id = match non_blank(new.id.as_deref()) {
        Some(id) => parse_public_id(id)?,
        None => generate_public_id(),
    };
    let phone_number = non_blank(new.phone_number.as_deref())
        .map(parse_phone)
        .transpose()?;
    let role = match non_blank(new.role.as_deref()) {
        Some(r) => Role::parse(r)?,
        None => Role::Editor,
    };
    let username = match new.username.map(|u| u.trim().to_string()) {
        Some(u) if !u.is_empty() => u,
        _ => email.split('@').next().unwrap_or_default().to_string(),
    };
    let now = now_ms();
    Ok(User {
        seq: 0,
        id,
        name: new.name.map(|n| n.trim().to_string()).unwrap_or_default(),
        username,
        email,
        phone_number,
        active: new.active.unwrap_or(true),
        role,
        timezone: new
            .timezone
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "UTC".into()),
        language: non_blank(new.language.as_deref())
            .map(parse_language)
            .transpose()?,
        contacts: new
            .contacts
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| Ok((parse_contact_key(&k)?, v.trim().to_string())))
            .collect::<Result<_, DirectoryError>>()?,
        created_at: now,
        updated_at: now,
    })
}

pub(super) fn apply_patch(mut user: User, patch: UserPatch) -> Result<User, DirectoryError> {
    let before = user.clone();
    if let Some(email) = patch.email {
        user.email = parse_email(&email)?;
    }
    if let Some(name) = patch.name {
        user.name = name.trim().to_string();
    }
    if let Some(username) = patch.username {
        user.username = username.trim().to_string();
    }
    if let Some(phone) = patch.phone_number {
        user.phone_number = non_blank(phone.as_deref()).map(parse_phone).transpose()?;
    }
    if let Some(role) = patch.role {
        user.role = Role::parse(&role)?;
    }
    if let Some(active) = patch.active {
        user.active = active;
    }
    if let Some(tz) = patch.timezone {
        user.timezone = tz.trim().to_string();
    }
    if let Some(language) = patch.language {
        user.language = non_blank(Some(&language)).map(parse_language).transpose()?;
    }
    for (key, value) in patch.contacts {
        let key = parse_contact_key(&key)?;
        let value = value.trim().to_string();
        if value.is_empty() {
            user.contacts.remove(&key);
        } else {
            user.contacts.insert(key, value);
        }
    }
    if user != before {
        user.updated_at = now_ms();
    }
    Ok(user)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_short_bcp47_tags_in_their_usual_case() {
        for (raw, tag) in [
            ("de", "de"),
            (" DE ", "de"),
            ("pt-br", "pt-BR"),
            ("pt_BR", "pt-BR"),
            ("es-419", "es-419"),
            ("sr-latn-rs", "sr-Latn-RS"),
        ] {
            assert_eq!(parse_language(raw).expect(raw), tag);
        }
        for bad in [
            "", "d", "deutsch", "de-", "de-BRA", "12", "de-DE-AT", "en-US-x",
        ] {
            assert!(parse_language(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        assert_eq!(parse_phone("+49 30 123456").expect("valid"), "+4930123456");
        assert_eq!(parse_phone("0049 30 123456").expect("valid"), "+4930123456");
        assert_eq!(
            parse_phone(" +1 (202) 555-0143 ").expect("valid"),
            "+12025550143"
        );
        assert!(parse_phone("030 123456").is_err(), "no country code");
        assert!(parse_phone("+49 abc").is_err());
        assert!(parse_phone("garbage").is_err());
        assert!(parse_phone("+1 555").is_err(), "too short");
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(parse_email(" a@b.co ").expect("valid"), "a@b.co");
        assert_eq!(
            parse_email("john+oncall@x.com").expect("valid"),
            "john+oncall@x.com"
        );
        for bad in ["", "no-at", "@x.com", "a@", "a b@x.com", "a@.x", "a@x..com"] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_fit_oncall() {
        for _ in 0..100 {
            let id = generate_public_id();
            assert!(id.len() <= MAX_PUBLIC_ID_LEN);
            assert!(parse_public_id(&id).is_ok());
        }
        assert!(
            parse_public_id("U12345678901234567890").is_err(),
            "21 chars"
        );
        assert!(parse_public_id("bad id").is_err());
    }

    #[test]
    fn verified_means_active_with_phone() {
        let mut u = validate_new(NewUser {
            email: "a@b.co".into(),
            phone_number: Some("+4930123456".into()),
            ..NewUser::default()
        })
        .expect("valid");
        assert!(u.phone_verified());
        u.active = false;
        assert!(!u.phone_verified());
        u.active = true;
        u.phone_number = None;
        assert!(!u.phone_verified());
    }
}
