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

/// Said after speech text that was shortened to fit a provider's limit.
pub const SHORTENED: &str = "… message shortened.";

/// `text` unchanged when `measure(text)` is at most `max`; otherwise its longest prefix that
/// ends at a word boundary followed by [`SHORTENED`], measured together within `max`.
///
/// `measure` gives the size the provider counts (for example the length once XML-escaped);
/// it must grow with the text, so a longer prefix never measures less.
pub fn fit_speech(text: &str, max: usize, measure: impl Fn(&str) -> usize) -> String {
    if measure(text) <= max {
        return text.to_string();
    }
    let fits = |end: usize| {
        let prefix = text.get(..end).unwrap_or_default().trim_end();
        measure(&format!("{prefix}{SHORTENED}")) <= max
    };
    // Where a word ends: the byte offset of whitespace that follows a non-whitespace char.
    let mut ends = Vec::new();
    let mut previous_is_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && previous_is_word {
            ends.push(i);
        }
        previous_is_word = !c.is_whitespace();
    }
    // The longest prefix that fits; `fits` only turns false as prefixes grow.
    let fitting = ends.partition_point(|&end| fits(end));
    match fitting.checked_sub(1).and_then(|i| ends.get(i)) {
        Some(&end) => {
            let prefix = text.get(..end).unwrap_or_default().trim_end();
            format!("{prefix}{SHORTENED}")
        }
        None if measure(SHORTENED) <= max => SHORTENED.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length once XML-escaped, as Twilio counts TwiML.
    fn escaped_len(text: &str) -> usize {
        text.chars()
            .map(|c| match c {
                '&' => 5,
                '<' | '>' => 4,
                '"' | '\'' => 6,
                _ => 1,
            })
            .sum()
    }

    #[test]
    fn short_speech_is_unchanged() {
        let text = "Disk full on db-1 & db-2";
        assert_eq!(fit_speech(text, 100, escaped_len), text);
        assert_eq!(fit_speech(text, escaped_len(text), escaped_len), text);
    }

    #[test]
    fn long_speech_is_cut_at_a_word_boundary_within_the_escaped_limit() {
        let words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
        let text = words.join(" ");
        for max in [50, 300, 3917, 4000] {
            let fitted = fit_speech(&text, max, escaped_len);
            assert!(escaped_len(&fitted) <= max, "{max}: {fitted}");
            let kept = fitted.strip_suffix(SHORTENED).expect("marker");
            // Whole words only, in order, and as many as fit.
            let kept: Vec<&str> = kept.split(' ').collect();
            assert_eq!(
                kept,
                words
                    .iter()
                    .take(kept.len())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            );
            let next = format!("{} {}{SHORTENED}", kept.join(" "), words[kept.len()]);
            assert!(escaped_len(&next) > max, "{max}: one more word would fit");
        }
    }

    #[test]
    fn escaping_counts_against_the_limit() {
        let text = "&& <<< & ".repeat(600);
        let fitted = fit_speech(&text, 4000, escaped_len);
        assert!(escaped_len(&fitted) <= 4000, "{}", escaped_len(&fitted));
        assert!(
            fitted.chars().count() < 1500,
            "the escaped length was not counted"
        );
        let kept = fitted.strip_suffix(SHORTENED).expect("marker");
        assert!(text.starts_with(kept));
        assert!(text[kept.len()..].starts_with(' '), "cut inside a word");
    }

    #[test]
    fn a_single_word_too_long_is_never_cut() {
        let text = "x".repeat(500);
        assert_eq!(fit_speech(&text, 100, escaped_len), SHORTENED);
        assert_eq!(fit_speech(&text, 5, escaped_len), "");
    }

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
