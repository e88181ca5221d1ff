//! Fitting a message to a channel: SMS length limits and text-to-speech.

/// Settings shared by backends that send text with a length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimit {
    /// Most characters per message (0: no limit).
    pub max_length: usize,
    /// Send several messages instead of cutting the text.
    pub split: bool,
}

/// Cuts `text` to `max` characters, ending with `…` when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if max == 0 || text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The parts to send for `text` under `limit`: one part (cut if needed) or several, split at
/// word boundaries where possible and numbered `(1/3) …` when there is more than one.
pub fn parts(text: &str, limit: TextLimit) -> Vec<String> {
    let total = text.chars().count();
    if limit.max_length == 0 || total <= limit.max_length {
        return vec![text.to_string()];
    }
    if !limit.split {
        return vec![truncate(text, limit.max_length)];
    }
    // Room for the "(nn/nn) " prefix.
    let prefix_room = 8;
    let room = limit.max_length.saturating_sub(prefix_room).max(1);
    let chars: Vec<char> = text.chars().collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + room).min(chars.len());
        if end < chars.len() {
            // Back up to the last space in the second half of the chunk, if there is one.
            if let Some(space) = (start + room / 2..end).rev().find(|&i| chars[i] == ' ') {
                end = space + 1;
            }
        }
        chunks.push(
            chars[start..end]
                .iter()
                .collect::<String>()
                .trim()
                .to_string(),
        );
        start = end;
    }
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| format!("({}/{n}) {c}", i + 1))
        .collect()
}

/// Text a speech engine reads well: no URLs, markup or symbol runs; `#42` read as "number 42".
pub fn speech(text: &str) -> String {
    // Drop markup tags (`<b>`, `</a>`) whole, keeping what they enclose.
    let mut untagged = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        untagged.push_str(&rest[..open]);
        match rest[open..].find('>') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                untagged.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    untagged.push_str(rest);
    let mut words = Vec::new();
    for word in untagged.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.")
        {
            words.push("(link)".to_string());
            continue;
        }
        let cleaned: String = word
            .chars()
            .filter(|c| {
                !matches!(
                    c,
                    '*' | '_' | '`' | '<' | '>' | '[' | ']' | '{' | '}' | '|' | '~' | '"' | '\\'
                )
            })
            .collect();
        let cleaned = match cleaned.strip_prefix('#') {
            Some(rest) if rest.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                format!("number {rest}")
            }
            _ => cleaned,
        };
        if !cleaned.is_empty() {
            words.push(cleaned);
        }
    }
    let joined = words.join(" ");
    // Collapse "(link) (link)" runs left by several URLs in a row.
    joined.replace("(link) (link)", "(link)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part() {
        let limit = TextLimit {
            max_length: 160,
            split: true,
        };
        assert_eq!(parts("hello", limit), vec!["hello"]);
        assert_eq!(
            parts(
                "hello",
                TextLimit {
                    max_length: 0,
                    split: false
                }
            ),
            vec!["hello"]
        );
    }

    #[test]
    fn long_text_is_cut_or_split_within_the_limit() {
        let text = "Grafana OnCall: Alert groups #1, #2, #3 and 2 more from stack: prod, integration: Grafana Alerting, alerts registered: 7. ".repeat(3);
        let cut = parts(
            &text,
            TextLimit {
                max_length: 160,
                split: false,
            },
        );
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].chars().count(), 160);
        assert!(cut[0].ends_with('…'));

        let split = parts(
            &text,
            TextLimit {
                max_length: 160,
                split: true,
            },
        );
        assert!(split.len() >= 3);
        for (i, p) in split.iter().enumerate() {
            assert!(p.chars().count() <= 160, "{p}");
            assert!(p.starts_with(&format!("({}/{})", i + 1, split.len())));
        }
        // Nothing lost: the words all come back in order.
        let rejoined: Vec<&str> = split
            .iter()
            .flat_map(|p| {
                p.split_once(") ")
                    .map(|(_, rest)| rest)
                    .unwrap_or(p)
                    .split_whitespace()
            })
            .collect();
        assert_eq!(rejoined, text.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn multibyte_text_is_split_on_characters() {
        let text = "Störung 🚨 ".repeat(40);
        for p in parts(
            &text,
            TextLimit {
                max_length: 70,
                split: true,
            },
        ) {
            assert!(p.chars().count() <= 70);
        }
        assert_eq!(truncate("äöü", 2), "ä…");
    }

    #[test]
    fn speech_drops_links_and_markup() {
        assert_eq!(
            speech("Alert group #42 \"CPU *high*\" see https://grafana.example/a/b?c=d now"),
            "Alert group number 42 CPU high see (link) now"
        );
        assert_eq!(speech("  `x`   <b>y</b> "), "x y");
    }
}
