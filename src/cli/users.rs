//! `users`: add, list, change, remove and import the users OnCall can notify.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use oncall_relay::config::Settings;
use oncall_relay::directory::{
    Directory, DirectoryError, ImportFormat, NewUser, User, UserPatch, parse_import,
};

use super::output::{outln, print_json};
use super::{ListFormat, backend_names, open_directory};

/// `users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user.
    Add(AddUser),
    /// List users.
    List(ListFormat),
    /// Change a user found by email or id.
    Update(UpdateUser),
    /// Remove a user found by email or id.
    Remove {
        /// Email or public id.
        user: String,
    },
    /// Add or update users from a CSV or YAML file, matched by email, or from the Go
    /// service's database.
    Import {
        /// The file (.csv, .yml or .yaml).
        #[arg(
            required_unless_present = "from_emu_oncall",
            conflicts_with = "from_emu_oncall"
        )]
        file: Option<PathBuf>,
        /// File format [default: from the extension]
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Read the Go service's `oncall_users` table from its PostgreSQL database
        /// (postgres://user:password@host/db): ids kept, phones normalised, roles mapped; rows
        /// that cannot be imported are skipped and listed. Safe to run again.
        #[arg(long, value_name = "POSTGRES_URL")]
        from_emu_oncall: Option<String>,
    },
}

/// `users add`.
#[derive(Debug, Args)]
pub struct AddUser {
    /// Email, as in Grafana.
    #[arg(long)]
    email: String,
    /// Phone number with country code, e.g. '+49 30 123456'.
    #[arg(long)]
    phone: Option<String>,
    #[command(flatten)]
    fields: UserFields,
    /// Public id kept as is (at most 20 characters) [default: generated]
    #[arg(long)]
    id: Option<String>,
    /// Add the user as inactive (never called).
    #[arg(long)]
    inactive: bool,
    /// Succeed without changes when a user with this email exists (for setup scripts).
    #[arg(long)]
    if_missing: bool,
}

/// `users update`: only what is given changes.
#[derive(Debug, Args)]
pub struct UpdateUser {
    /// Email or public id of the user to change.
    user: String,
    /// New email.
    #[arg(long)]
    email: Option<String>,
    /// New phone number.
    #[arg(long, conflicts_with = "no_phone")]
    phone: Option<String>,
    /// Remove the phone number.
    #[arg(long)]
    no_phone: bool,
    #[command(flatten)]
    fields: UserFields,
    /// Activate or deactivate.
    #[arg(long)]
    active: Option<bool>,
}

/// The fields `users add` sets and `users update` changes alike.
#[derive(Debug, Args)]
struct UserFields {
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Grafana username [default for a new user: the email's local part]
    #[arg(long)]
    username: Option<String>,
    /// admin, editor (user), viewer (observer) or none [default for a new user: editor]
    #[arg(long)]
    role: Option<String>,
    /// IANA time zone [default for a new user: UTC]
    #[arg(long)]
    timezone: Option<String>,
    /// Language of the texts this person receives, e.g. de or pt-BR [default: the backend's]
    #[arg(long)]
    language: Option<String>,
    /// A backend address, e.g. telegram=12345678, email=a@example.com, ntfy=alice-pager,
    /// route=sms_gateway (a backend tried first for this user); on update an empty value
    /// removes it. Repeatable.
    #[arg(long = "contact", value_name = "NAME=VALUE", value_parser = parse_contact)]
    contacts: Vec<(String, String)>,
}

fn parse_contact(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("`{raw}` is not NAME=VALUE"))
}

/// Runs a `users` subcommand against the configured database.
pub async fn run(settings: Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    if let UsersCommand::Add(AddUser { fields, .. })
    | UsersCommand::Update(UpdateUser { fields, .. }) = &cmd
    {
        check_route_contact(&settings, &fields.contacts)?;
    }
    let (store, dir) = open_directory(&settings).await?;
    match cmd {
        UsersCommand::Add(a) => add(&dir, a).await?,
        UsersCommand::List(ListFormat { json }) => {
            let list = dir.list().await?;
            if json {
                print_json(&list)?;
            } else {
                print_users(&list)?;
            }
        }
        UsersCommand::Update(u) => update(&dir, u).await?,
        UsersCommand::Remove { user } => {
            let user = dir.remove(&user).await?;
            outln!("removed {}", describe(&user));
        }
        UsersCommand::Import {
            from_emu_oncall: Some(url),
            ..
        } => import_emu_oncall(&dir, &url).await?,
        UsersCommand::Import {
            file: None,
            from_emu_oncall: None,
            ..
        } => bail!("give a file to import, or --from-emu-oncall postgres://..."),
        UsersCommand::Import {
            file: Some(file),
            format,
            ..
        } => import_file(&dir, &file, format).await?,
    }
    store.close().await;
    Ok(())
}

/// A `route` contact must name a backend, or the user's notifications would silently skip it.
fn check_route_contact(settings: &Settings, contacts: &[(String, String)]) -> anyhow::Result<()> {
    for (key, value) in contacts {
        let value = value.trim();
        if key.trim().eq_ignore_ascii_case("route")
            && !value.is_empty()
            && !backend_names(settings).contains(&value)
        {
            bail!(
                "--contact route={value}: no backend named `{value}` (configured: {}); check `plugin.backends` or --config",
                backend_names(settings).join(", ")
            );
        }
    }
    Ok(())
}

async fn add(dir: &Directory, a: AddUser) -> anyhow::Result<()> {
    let email = a.email.clone();
    let added = dir
        .add(NewUser {
            id: a.id,
            email: a.email,
            name: a.fields.name,
            username: a.fields.username,
            phone_number: a.phone,
            role: a.fields.role,
            active: Some(!a.inactive),
            timezone: a.fields.timezone,
            language: a.fields.language,
            contacts: a.fields.contacts.into_iter().collect(),
        })
        .await;
    match added {
        Ok(user) => outln!("added {}", describe(&user)),
        // Re-running a setup script is fine: the user is there, as asked.
        Err(DirectoryError::Duplicate { field: "email", .. }) if a.if_missing => {
            let user = dir.get(&email).await?;
            outln!("already there, unchanged: {}", describe(&user));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn update(dir: &Directory, u: UpdateUser) -> anyhow::Result<()> {
    let phone = if u.no_phone {
        Some(None)
    } else {
        u.phone.map(Some)
    };
    let user = dir
        .update(
            &u.user,
            UserPatch {
                email: u.email,
                name: u.fields.name,
                username: u.fields.username,
                phone_number: phone,
                role: u.fields.role,
                active: u.active,
                timezone: u.fields.timezone,
                language: u.fields.language,
                contacts: u.fields.contacts.into_iter().collect(),
            },
        )
        .await?;
    outln!("updated {}", describe(&user));
    Ok(())
}

async fn import_emu_oncall(dir: &Directory, url: &str) -> anyhow::Result<()> {
    let records = oncall_relay::directory::read_emu_oncall(url).await?;
    let total = records.len();
    let report = dir.import_each(records).await?;
    outln!(
        "imported the Go service's oncall_users ({total} rows): {} added, {} updated, {} unchanged, {} skipped",
        report.added.len(),
        report.updated.len(),
        report.unchanged,
        report.skipped.len()
    );
    for email in &report.added {
        outln!("  added     {email}");
    }
    for email in &report.updated {
        outln!("  updated   {email}");
    }
    for s in &report.skipped {
        outln!("  skipped   {}: {}", s.record, s.reason);
    }
    for note in &report.notes {
        outln!("  note      {note}");
    }
    Ok(())
}

async fn import_file(
    dir: &Directory,
    file: &std::path::Path,
    format: Option<ImportFormat>,
) -> anyhow::Result<()> {
    let format = match format.or_else(|| ImportFormat::from_path(file)) {
        Some(f) => f,
        None => bail!(
            "cannot tell the format of {}: use --format csv or --format yaml",
            file.display()
        ),
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = parse_import(&text, format, &file.display().to_string())?;
    let report = dir.import(rows).await?;
    outln!(
        "imported {}: {} added, {} updated, {} unchanged",
        file.display(),
        report.added,
        report.updated,
        report.unchanged
    );
    Ok(())
}

/// What identifies a user to the operator: the name when one was given, and the email.
fn describe(u: &User) -> String {
    let who = if u.name.is_empty() {
        u.email.clone()
    } else {
        format!("{} <{}>", u.name, u.email)
    };
    format!(
        "{who} id={} role={} phone={} {}",
        u.id,
        u.role.as_str(),
        u.phone_number.as_deref().unwrap_or("-"),
        if u.phone_verified() {
            "verified"
        } else {
            "not verified"
        }
    )
}

fn print_users(users: &[User]) -> anyhow::Result<()> {
    outln!(
        "{:<20} {:<32} {:<16} {:<7} {:<16} {:<6} VERIFIED",
        "ID",
        "EMAIL",
        "USERNAME",
        "ROLE",
        "PHONE",
        "ACTIVE"
    );
    for u in users {
        outln!(
            "{:<20} {:<32} {:<16} {:<7} {:<16} {:<6} {}",
            u.id,
            u.email,
            u.username,
            u.role.as_str(),
            u.phone_number.as_deref().unwrap_or("-"),
            if u.active { "yes" } else { "no" },
            if u.phone_verified() { "yes" } else { "no" }
        );
    }
    Ok(())
}
