//! SMS length as carriers count it: GSM-7 septets or UCS-2 code units, packed into segments.
//!
//! A text made only of the GSM 03.38 default alphabet (and its extension table, whose
//! characters take two septets) is sent as GSM-7: 160 septets in a single SMS, 153 per
//! segment once concatenated (the rest of each segment holds the header that joins them).
//! Any other character turns the whole text into UCS-2: 70 UTF-16 code units single, 67 per
//! segment. Carriers never split an escape sequence or a surrogate pair across segments, so a
//! character that does not fit in what is left of a segment starts the next one.

use std::fmt;

use super::shape::{self, TextLimit};

/// Septets (GSM-7) or code units (UCS-2) in a single, unconcatenated SMS.
const SINGLE: [usize; 2] = [160, 70];
/// Septets or code units per segment of a concatenated SMS.
const PER_SEGMENT: [usize; 2] = [153, 67];

/// Ends an SMS text that was shortened to fit; plain GSM-7, so it never changes the encoding.
pub const SHORTENED: &str = "...";

/// How an SMS text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet, 7 bits a character (extension characters take 14).
    Gsm7,
    /// UTF-16 code units, 16 bits each (a character outside the BMP takes two).
    Ucs2,
}

impl Encoding {
    fn index(self) -> usize {
        match self {
            Encoding::Gsm7 => 0,
            Encoding::Ucs2 => 1,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        })
    }
}

/// The size of an SMS text as a carrier bills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsLength {
    /// GSM-7 or UCS-2.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Segments sent (an empty text still takes one).
    pub segments: usize,
}

/// Counts the segments of `text` the way carriers do (see the module documentation).
pub fn measure(text: &str) -> SmsLength {
    let encoding = encoding(text);
    let size = |c: char| match encoding {
        Encoding::Gsm7 => gsm7_septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    };
    let units: usize = text.chars().map(size).sum();
    let segments = if units <= SINGLE[encoding.index()] {
        1
    } else {
        let room = PER_SEGMENT[encoding.index()];
        let (mut segments, mut used) = (1, 0);
        for c in text.chars() {
            let n = size(c);
            if used + n > room {
                segments += 1;
                used = 0;
            }
            used += n;
        }
        segments
    };
    SmsLength {
        encoding,
        units,
        segments,
    }
}

/// The number of segments `text` takes (see [`measure`]).
pub fn segments(text: &str) -> usize {
    measure(text).segments
}

/// GSM-7 when every character of `text` is in the default alphabet or its extension table.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// Septets a character takes in GSM-7: 1 in the default alphabet, 2 in the extension table
/// (escape + code), `None` when GSM-7 cannot carry it.
fn gsm7_septets(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{c}^{}\\[~]|€";
    if c.is_ascii_alphanumeric() || c == ' ' || BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// `text` unchanged when it takes at most `max_segments` segments; otherwise its longest
/// prefix that ends at a word boundary and, followed by [`SHORTENED`], fits. A first word too
/// long to fit is cut between characters instead (never inside a character, a surrogate pair
/// or before a combining mark).
pub fn fit(text: &str, max_segments: usize) -> String {
    fit_with(text, |t| segments(t) <= max_segments)
}

/// The longest prefix of `text` (whole words where possible) that, followed by
/// [`SHORTENED`], passes `fits`; `text` itself when it passes. `fits` must only turn false as
/// texts grow (a longer prefix never fits when a shorter one does not).
pub fn fit_with(text: &str, fits: impl Fn(&str) -> bool) -> String {
    if fits(text) {
        return text.to_string();
    }
    let shortened = |end: usize| {
        let prefix = text.get(..end).unwrap_or_default().trim_end();
        format!("{prefix}{SHORTENED}")
    };
    // Where a word ends: whitespace right after a non-whitespace character.
    let mut word_ends = Vec::new();
    let mut previous_is_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && previous_is_word {
            word_ends.push(i);
        }
        previous_is_word = !c.is_whitespace();
    }
    if let Some(end) = longest_fitting(&word_ends, |end| fits(&shortened(end))) {
        return shortened(end);
    }
    // No whole word fits: cut between characters, never before a mark that belongs to the
    // character before it.
    let char_ends: Vec<usize> = text
        .char_indices()
        .skip(1)
        .filter(|&(i, c)| {
            !joins_previous(c)
                && !text
                    .get(..i)
                    .is_some_and(|before| before.ends_with('\u{200d}'))
        })
        .map(|(i, _)| i)
        .collect();
    match longest_fitting(&char_ends, |end| fits(&shortened(end))) {
        Some(end) => shortened(end),
        None if fits(SHORTENED) => SHORTENED.to_string(),
        None => String::new(),
    }
}

/// How a backend that sends SMS limits a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsLimit {
    /// Most characters per request to the provider (0: no limit).
    pub max_length: usize,
    /// Send a text over `max_length` as several numbered messages instead of shortening it.
    pub split: bool,
    /// Most segments all messages of one notification may take together (0: no limit).
    pub max_segments: usize,
}

/// The messages to send for `text` under `limit`, in order: one, or several numbered
/// `(1/3) ...` split at words when `split` is on. Text over `max_segments` (counted over all
/// messages) or, without `split`, over `max_length` is shortened at a word boundary and ends
/// with [`SHORTENED`].
pub fn parts(text: &str, limit: SmsLimit) -> Vec<String> {
    let within_segments = |messages: &[String]| {
        limit.max_segments == 0
            || messages.iter().map(|m| segments(m)).sum::<usize>() <= limit.max_segments
    };
    if !limit.split {
        let fits = |t: &str| {
            (limit.max_length == 0 || t.chars().count() <= limit.max_length)
                && (limit.max_segments == 0 || segments(t) <= limit.max_segments)
        };
        return vec![fit_with(text, fits)];
    }
    let split = |t: &str| {
        shape::parts(
            t,
            TextLimit {
                max_length: limit.max_length,
                split: true,
            },
        )
    };
    let all = split(text);
    if within_segments(&all) {
        return all;
    }
    split(&fit_with(text, |t| within_segments(&split(t))))
}

/// The largest of `ends` (ascending) that `fits`, searching by halves; then checked, and
/// walked back should `fits` not turn false exactly once (splitting into parts can wobble).
fn longest_fitting(ends: &[usize], fits: impl Fn(usize) -> bool) -> Option<usize> {
    let count = ends.partition_point(|&end| fits(end));
    ends.get(..count)?
        .iter()
        .rev()
        .copied()
        .find(|&end| fits(end))
}

/// Whether `c` only modifies the character before it (combining marks, variation selectors,
/// zero-width joiners, skin tones), so a cut before it would split what a reader sees as one.
fn joins_previous(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036f}'
        | '\u{1ab0}'..='\u{1aff}'
        | '\u{1dc0}'..='\u{1dff}'
        | '\u{20d0}'..='\u{20ff}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{fe20}'..='\u{fe2f}'
        | '\u{200d}'
        | '\u{1f3fb}'..='\u{1f3ff}'
        | '\u{e0020}'..='\u{e007f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(encoding: Encoding, units: usize, segments: usize) -> SmsLength {
        SmsLength {
            encoding,
            units,
            segments,
        }
    }

    #[test]
    fn plain_gsm7_single_and_concatenated_boundaries() {
        use Encoding::Gsm7;
        assert_eq!(measure(""), length(Gsm7, 0, 1));
        assert_eq!(measure("Disk full on db-1"), length(Gsm7, 17, 1));
        assert_eq!(measure(&"a".repeat(160)), length(Gsm7, 160, 1));
        assert_eq!(measure(&"a".repeat(161)), length(Gsm7, 161, 2));
        assert_eq!(measure(&"a".repeat(153 * 2)), length(Gsm7, 306, 2));
        assert_eq!(measure(&"a".repeat(153 * 2 + 1)), length(Gsm7, 307, 3));
        // The whole default alphabet, accents and Greek capitals included, is one septet each.
        let alphabet = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà";
        assert_eq!(measure(alphabet).encoding, Gsm7);
        assert_eq!(measure(alphabet).units, alphabet.chars().count());
    }

    #[test]
    fn extension_characters_take_two_septets() {
        use Encoding::Gsm7;
        for c in ['€', '[', ']', '{', '}', '^', '~', '\\', '|', '\u{c}'] {
            assert_eq!(measure(&c.to_string()), length(Gsm7, 2, 1), "{c:?}");
        }
        // 80 two-septet characters fill a single SMS; one more septet does not fit.
        assert_eq!(measure(&"€".repeat(80)), length(Gsm7, 160, 1));
        assert_eq!(
            measure(&format!("{}a", "€".repeat(80))),
            length(Gsm7, 161, 2)
        );
        // An escape sequence is never split: 152 septets, then `€` moves to the next segment.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        assert_eq!(measure(&text), length(Gsm7, 164, 2));
        let straddling = format!("{}€{}", "a".repeat(152), "b".repeat(152));
        assert_eq!(measure(&straddling), length(Gsm7, 306, 3));
    }

    #[test]
    fn any_other_character_makes_the_whole_text_ucs2() {
        use Encoding::Ucs2;
        assert_eq!(measure("Störung: Диск заполнен"), length(Ucs2, 22, 1));
        assert_eq!(measure(&"д".repeat(70)), length(Ucs2, 70, 1));
        assert_eq!(measure(&"д".repeat(71)), length(Ucs2, 71, 2));
        assert_eq!(measure(&"д".repeat(67 * 2)), length(Ucs2, 134, 2));
        assert_eq!(measure(&"д".repeat(67 * 2 + 1)), length(Ucs2, 135, 3));
        // One non-GSM character among GSM text: everything counts in UTF-16 units.
        assert_eq!(
            measure(&format!("{}ç", "a".repeat(69))),
            length(Ucs2, 70, 1)
        );
        assert_eq!(
            measure(&format!("{}’", "a".repeat(70))),
            length(Ucs2, 71, 2)
        );
        // The curly quote and the ellipsis are not GSM-7.
        assert_eq!(encoding("it’s"), Ucs2);
        assert_eq!(encoding("wait…"), Ucs2);
    }

    #[test]
    fn emoji_are_surrogate_pairs_never_split_across_segments() {
        use Encoding::Ucs2;
        assert_eq!(measure("🚨"), length(Ucs2, 2, 1));
        assert_eq!(measure(&"🚨".repeat(35)), length(Ucs2, 70, 1));
        assert_eq!(measure(&"🚨".repeat(36)), length(Ucs2, 72, 2));
        // 66 units, then a pair that would straddle the 67-unit boundary: it moves on.
        let text = format!("{}🚨{}", "д".repeat(66), "д".repeat(10));
        assert_eq!(measure(&text), length(Ucs2, 78, 2));
        let straddling = format!("{}🚨{}", "д".repeat(66), "д".repeat(66));
        assert_eq!(measure(&straddling), length(Ucs2, 134, 3));
        // 67 pairs: 33 per segment (66 units), so three segments for 134 units.
        assert_eq!(measure(&"🚨".repeat(67)), length(Ucs2, 134, 3));
    }

    #[test]
    fn fitting_keeps_short_text_and_cuts_long_text_at_a_word() {
        assert_eq!(fit("Disk full on db-1", 1), "Disk full on db-1");
        let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        for max in [1, 2, 3, 7] {
            let fitted = fit(&text, max);
            assert_eq!(segments(&fitted), max, "{max}: {fitted}");
            let kept = fitted.strip_suffix(SHORTENED).expect("marker");
            let kept: Vec<&str> = kept.split(' ').collect();
            assert_eq!(kept, words[..kept.len()]);
            // As many words as fit: one more would not.
            let next = format!("{} {}{SHORTENED}", kept.join(" "), words[kept.len()]);
            assert!(segments(&next) > max, "{max}: one more word would fit");
        }
    }

    #[test]
    fn fitting_ucs2_text_keeps_its_encoding_and_whole_characters() {
        let text = "Сервер 🚨 недоступен ".repeat(30);
        let fitted = fit(&text, 2);
        let m = measure(&fitted);
        assert_eq!((m.encoding, m.segments), (Encoding::Ucs2, 2), "{fitted}");
        let kept = fitted.strip_suffix(SHORTENED).expect("marker");
        assert!(text.starts_with(kept));
        assert!(text[kept.len()..].starts_with(' '), "cut inside a word");
        // A GSM-7 text stays GSM-7: the marker is in the default alphabet.
        let gsm = "CPU high on db-1 ".repeat(40);
        let fitted = fit(&gsm, 1);
        assert_eq!(measure(&fitted), length(Encoding::Gsm7, 159, 1));
        assert!(fitted.ends_with(" CPU..."), "{fitted}");
    }

    #[test]
    fn parts_fit_the_segment_budget_over_all_messages() {
        let text = "CPU above 95 percent on db-1, db-2 and db-3 for ten minutes. ".repeat(20);
        let limit = |max_length, split, max_segments| SmsLimit {
            max_length,
            split,
            max_segments,
        };
        // Without a budget, everything goes out in numbered parts.
        let all = parts(&text, limit(500, true, 0));
        assert!(all.len() >= 3);
        assert!(all.iter().all(|p| p.chars().count() <= 500));
        // With one, the text is shortened first, then split.
        let budget = parts(&text, limit(320, true, 6));
        let used: usize = budget.iter().map(|p| segments(p)).sum();
        assert!((5..=6).contains(&used), "{used}: {budget:?}");
        assert!(budget.len() >= 2);
        assert!(budget.last().is_some_and(|p| p.ends_with(SHORTENED)));
        assert!(budget[0].starts_with(&format!("(1/{}) CPU", budget.len())));
        // Without splitting: one message within both the length and the budget.
        let one = parts(&text, limit(1600, false, 2));
        assert_eq!(one.len(), 1);
        assert_eq!(segments(&one[0]), 2);
        let one = parts(&text, limit(100, false, 10));
        assert!(
            one[0].chars().count() <= 100 && one[0].ends_with("db-2..."),
            "{one:?}"
        );
        // Short text is left alone.
        assert_eq!(parts("ok", limit(160, false, 1)), vec!["ok"]);
    }

    #[test]
    fn a_word_too_long_is_cut_between_whole_characters() {
        let url = format!("https://grafana.example/{}", "x".repeat(400));
        let fitted = fit(&url, 1);
        assert_eq!(fitted.chars().count(), 160);
        assert!(fitted.ends_with(SHORTENED));
        let flags = "👍🏽".repeat(100);
        let fitted = fit(&flags, 1);
        assert_eq!(segments(&fitted), 1);
        let kept = fitted.strip_suffix(SHORTENED).expect("marker");
        // Never a thumb without its skin tone.
        assert_eq!(kept, "👍🏽".repeat(kept.chars().count() / 2));
        assert!(!kept.is_empty());
    }
}
