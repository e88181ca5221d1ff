//! What a person may answer to a page: `1`/`a`/`ack`, `2`/`r`/`resolve`, `3`/`s`/`silence`
//! (`s 120` for two hours), optionally naming the page by its number (`a 17`, `#17 ack`, `17a`).

/// What a caller hears after a key that is not in the menu.
pub const NOT_A_CHOICE: &str = "That is not a choice. Goodbye.";
/// What a caller hears when there is nothing to act on.
pub const GOODBYE: &str = "Goodbye.";
/// Minutes a bare "silence" lasts, as in OnCall's own phone menu (and the Silence button).
pub const DEFAULT_SILENCE_MINUTES: u32 = crate::notify::buttons::SILENCE_MINUTES;
/// Longest silence a reply may ask for: a day, OnCall's longest timed choice.
pub const MAX_SILENCE_MINUTES: u32 = 24 * 60;

/// An action on an alert group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop the escalation: someone is on it.
    Acknowledge,
    /// The problem is gone.
    Resolve,
    /// Quiet for this many minutes.
    Silence(u32),
}

impl Action {
    /// The path segment of OnCall's public API for this action.
    pub fn api_name(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
            Action::Silence(_) => "silence",
        }
    }

    /// The past tense people read in a confirmation.
    pub fn done_text(self) -> String {
        match self {
            Action::Acknowledge => "acknowledged".into(),
            Action::Resolve => "resolved".into(),
            Action::Silence(m) if m % 60 == 0 => format!("silenced for {} h", m / 60),
            Action::Silence(m) => format!("silenced for {m} min"),
        }
    }

    /// The action as a button says it.
    pub fn button_text(self) -> String {
        match self {
            Action::Acknowledge => "Acknowledge".into(),
            Action::Resolve => "Resolve".into(),
            Action::Silence(m) => format!("Silence for {m} min"),
        }
    }

    /// The action and notification a chat button's data stands for.
    pub fn from_button(data: &str) -> Option<(Action, i64)> {
        let (code, id) = crate::notify::buttons::parse(data)?;
        let action = match code {
            "a" => Action::Acknowledge,
            "r" => Action::Resolve,
            "s" => Action::Silence(DEFAULT_SILENCE_MINUTES),
            _ => return None,
        };
        Some((action, id))
    }

    /// The action a phone key stands for (OnCall's own menu).
    pub fn from_key(key: &str) -> Option<Action> {
        match key.trim() {
            "1" => Some(Action::Acknowledge),
            "2" => Some(Action::Resolve),
            "3" => Some(Action::Silence(DEFAULT_SILENCE_MINUTES)),
            _ => None,
        }
    }
}

/// A parsed reply: the action and, when given, the number of the page it is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// What to do.
    pub action: Action,
    /// The alert group number (`#17`) the reply names; `None`: the latest open page.
    pub number: Option<u64>,
}

/// Why a reply is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not one of the words or keys.
    #[error("not understood")]
    Unknown,
    /// A silence longer than allowed, or zero.
    #[error("silence must be 1 to {MAX_SILENCE_MINUTES} minutes")]
    BadDuration,
}

/// The help text sent back for a reply that is not understood.
pub const HELP: &str = "Reply 1 or a to acknowledge, 2 or r to resolve, 3 or s to silence 30 min (s 120: 2 h). Add the alert number to pick one: a 17.";

/// Parses a reply. Case, punctuation around words and a leading `#` on the number do not matter.
pub fn parse(text: &str) -> Result<Command, CommandError> {
    let lowered = text.trim().to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == '!')
        .filter(|w| !w.is_empty())
        .collect();
    let mut action = None;
    let mut numbers = Vec::new();
    for word in &words {
        let word = word.trim_start_matches('#');
        if let Ok(n) = word.parse::<u64>() {
            numbers.push(n);
            continue;
        }
        // `17a`: a number glued to an action word.
        let digits = word.chars().take_while(char::is_ascii_digit).count();
        let (head, tail) = word.split_at(digits);
        let Some(found) = action_word(tail) else {
            return Err(CommandError::Unknown);
        };
        if action.is_some() {
            return Err(CommandError::Unknown);
        }
        action = Some(found);
        if let Ok(n) = head.parse::<u64>() {
            // A glued number names the page and goes before any other number.
            numbers.insert(0, n);
        }
    }
    match (action, numbers.as_slice()) {
        // A bare key: `1`, `2`, `3` (and nothing else).
        (None, [key]) => {
            let action = Action::from_key(&key.to_string()).ok_or(CommandError::Unknown)?;
            Ok(Command {
                action,
                number: None,
            })
        }
        (Some(Word::Ack), []) => Ok(command(Action::Acknowledge, None)),
        (Some(Word::Ack), [n]) => Ok(command(Action::Acknowledge, Some(*n))),
        (Some(Word::Resolve), []) => Ok(command(Action::Resolve, None)),
        (Some(Word::Resolve), [n]) => Ok(command(Action::Resolve, Some(*n))),
        (Some(Word::Silence), []) => Ok(command(Action::Silence(DEFAULT_SILENCE_MINUTES), None)),
        // `s 120`: minutes; `s 17 120` / `17s 120`: page 17 for 120 minutes. A lone number after
        // "silence" is a duration, since "silence page 17 for 30 min" is what `17s` says.
        (Some(Word::Silence), [minutes]) => Ok(command(Action::Silence(duration(*minutes)?), None)),
        (Some(Word::Silence), [n, minutes]) => {
            Ok(command(Action::Silence(duration(*minutes)?), Some(*n)))
        }
        _ => Err(CommandError::Unknown),
    }
}

fn command(action: Action, number: Option<u64>) -> Command {
    Command { action, number }
}

fn duration(minutes: u64) -> Result<u32, CommandError> {
    u32::try_from(minutes)
        .ok()
        .filter(|m| (1..=MAX_SILENCE_MINUTES).contains(m))
        .ok_or(CommandError::BadDuration)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Ack,
    Resolve,
    Silence,
}

fn action_word(word: &str) -> Option<Word> {
    match word {
        "a" | "ack" | "acknowledge" => Some(Word::Ack),
        "r" | "res" | "resolve" => Some(Word::Resolve),
        "s" | "sil" | "silence" => Some(Word::Silence),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keys_and_numbers() {
        let cases: &[(&str, Action, Option<u64>)] = &[
            ("1", Action::Acknowledge, None),
            ("a", Action::Acknowledge, None),
            (" ACK ", Action::Acknowledge, None),
            ("Acknowledge.", Action::Acknowledge, None),
            ("2", Action::Resolve, None),
            ("r", Action::Resolve, None),
            ("resolve", Action::Resolve, None),
            ("3", Action::Silence(30), None),
            ("s", Action::Silence(30), None),
            ("silence", Action::Silence(30), None),
            ("s 120", Action::Silence(120), None),
            ("a 17", Action::Acknowledge, Some(17)),
            ("#17 ack", Action::Acknowledge, Some(17)),
            ("17a", Action::Acknowledge, Some(17)),
            ("r #4", Action::Resolve, Some(4)),
            ("17s 60", Action::Silence(60), Some(17)),
            ("s 17 60", Action::Silence(60), Some(17)),
        ];
        for (text, action, number) in cases {
            assert_eq!(
                parse(text),
                Ok(Command {
                    action: *action,
                    number: *number
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn anything_else_is_not_a_command() {
        for text in ["", "4", "hello", "a r", "ack please", "1 2", "a 1 2", "x17"] {
            assert_eq!(parse(text), Err(CommandError::Unknown), "{text}");
        }
        assert_eq!(parse("s 0"), Err(CommandError::BadDuration));
        assert_eq!(parse("s 100000"), Err(CommandError::BadDuration));
    }

    #[test]
    fn confirmation_texts() {
        assert_eq!(Action::Silence(120).done_text(), "silenced for 2 h");
        assert_eq!(Action::Silence(45).done_text(), "silenced for 45 min");
        assert_eq!(Action::Acknowledge.api_name(), "acknowledge");
    }
}
