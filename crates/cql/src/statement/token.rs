//! A byte-level CQL tokenizer following Cassandra's `Lexer.g`.
//!
//! [`Tokenizer`] is an iterator of [`Token`]s (a kind and a byte span) over a `&str`. It never
//! allocates, never panics and always advances, so it terminates on any input. Whitespace and
//! comments are skipped; problems (an unterminated string, an unexpected character) become tokens
//! of their own so that callers decide what to do with them.
//!
//! Where Cassandra's lexer is surprising, this one is surprising in the same way, so that a parser
//! built on it agrees with the server:
//! - keywords are plain [`TokenKind::Ident`]s (the parser compares them ASCII-case-insensitively);
//!   `true`/`false` stay identifiers too, but `NaN` and `Infinity` are [`TokenKind::Float`]s;
//! - a `-` directly followed by a digit, `NaN` or `Infinity` is part of the number (`x -3` is
//!   `x`, `-3`, while `x - 3` is `x`, `-`, `3`), exactly as Cassandra lexes it;
//! - `/* … */` comments do not nest: the first `*/` closes the comment, as in Cassandra;
//! - ISO 8601 durations (`P1DT2H`, `P2W`) use upper-case designators only, and win over an
//!   identifier of the same length (`P1D` is a duration, `P1Dx` an identifier).
//!
//! Deliberate differences, both more lenient than Cassandra: a `--`/`//` comment may end at the
//! end of the input (Cassandra wants a newline), and `:name` is lexed as one
//! [`TokenKind::NamedMarker`] token where a term can start (see [`TokenKind::NamedMarker`]).

use std::borrow::Cow;
use std::ops::Range;

/// What a [`Token`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// An unquoted identifier or keyword: `[A-Za-z][A-Za-z0-9_]*`, including `true`/`false`.
    Ident,
    /// `"…"` with `""` as the escape for one `"`. `""` (empty) is Cassandra's `EMPTY_QUOTED_NAME`.
    QuotedIdent,
    /// `'…'` with `''` as the escape for one `'`.
    String,
    /// `$$…$$`: no escapes, ends at the first `$$`.
    DollarString,
    /// `-?[0-9]+`.
    Integer,
    /// `-?[0-9]+(.[0-9]*)?([eE][+-]?[0-9]+)?` with a dot or an exponent, and `[-]NaN`,
    /// `[-]Infinity`.
    Float,
    /// `0x` followed by zero or more hex digits (a blob literal).
    Hex,
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    Uuid,
    /// `1h30m`, `-3d`, `P1DT2H`, `P2W`, `P0001-02-03T04:05:06`.
    Duration,
    /// `?`, a positional bind marker.
    QMark,
    /// `:name` or `:"Name"`, a named bind marker (the span includes the colon).
    ///
    /// Cassandra lexes `:` and the name separately and lets the parser decide; this tokenizer
    /// decides from the previous token: after a token that can end a term (a literal, a
    /// non-keyword identifier, `)`, `]`, `}`, a marker) the colon is a map/UDT separator
    /// ([`TokenKind::Colon`]), as in `{'k':v}` or `{f:true}`; elsewhere (after `=`, `(`, `,`,
    /// `IN`, `LIMIT`, `TTL` …) `:name` is a marker. A parser that knows better can split it at
    /// `start + 1`. `: name` with a space between is always a colon and an identifier.
    NamedMarker,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
    Dot,
    /// `..` (collection slices).
    Range,
    Colon,
    Star,
    Slash,
    Percent,
    Plus,
    Minus,
    PlusEq,
    MinusEq,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// A `'…` or `$$…` string that reaches the end of the input (the span runs to the end).
    UnterminatedString,
    /// A `"…` quoted identifier that reaches the end of the input.
    UnterminatedQuotedIdent,
    /// A `/* …` comment that reaches the end of the input.
    UnterminatedComment,
    /// One character no CQL token starts with (`!` alone, `$` alone, `_`, `#`, non-ASCII …).
    Unexpected,
}

impl TokenKind {
    /// Whether this token means the input is not valid CQL whatever the parser does.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::UnterminatedString
                | Self::UnterminatedQuotedIdent
                | Self::UnterminatedComment
                | Self::Unexpected
        )
    }

    /// Whether this token is a constant literal (Cassandra's `constant` rule, less booleans).
    pub fn is_literal(self) -> bool {
        matches!(
            self,
            Self::String
                | Self::DollarString
                | Self::Integer
                | Self::Float
                | Self::Hex
                | Self::Uuid
                | Self::Duration
        )
    }
}

/// One token: its kind and its byte span in the source.
///
/// Offsets are `u32` to keep the token at 12 bytes: a statement is a protocol `[long string]`,
/// which cannot exceed `i32::MAX` bytes anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    pub kind: TokenKind,
    pub start: u32,
    pub end: u32,
}

impl Token {
    pub fn span(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The token's source text (including quotes, markers' `:` …).
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.span()).unwrap_or("")
    }

    /// Whether this is the unquoted identifier or keyword `kw` (ASCII case-insensitive).
    pub fn is_keyword(&self, src: &str, kw: &str) -> bool {
        // The length test first: it rejects almost every token without touching the text.
        self.kind == TokenKind::Ident
            && (self.end - self.start) as usize == kw.len()
            && src
                .as_bytes()
                .get(self.span())
                .is_some_and(|t| t.eq_ignore_ascii_case(kw.as_bytes()))
    }

    /// The value of a string literal: quotes removed, `''` unescaped. `None` for other kinds.
    pub fn string_value<'a>(&self, src: &'a str) -> Option<Cow<'a, str>> {
        let text = self.text(src);
        match self.kind {
            TokenKind::String => Some(unescape(strip(text, 1), "''", "'")),
            TokenKind::DollarString => Some(Cow::Borrowed(strip(text, 2))),
            _ => None,
        }
    }

    /// The normalized name of an identifier or named marker: unquoted names are ASCII-lowercased
    /// (Cassandra folds case), quoted ones are taken verbatim with `""` unescaped. `None` for
    /// other kinds.
    pub fn ident_value<'a>(&self, src: &'a str) -> Option<Cow<'a, str>> {
        let text = self.text(src);
        let name = match self.kind {
            TokenKind::Ident | TokenKind::QuotedIdent => text,
            TokenKind::NamedMarker => text.get(1..).unwrap_or(""),
            _ => return None,
        };
        Some(normalize_ident(name))
    }
}

/// Normalizes identifier source text: `"…"` → unquoted with `""` unescaped, anything else →
/// ASCII lowercase. Borrows when nothing changes.
pub fn normalize_ident(text: &str) -> Cow<'_, str> {
    if text.starts_with('"') {
        unescape(strip(text, 1), "\"\"", "\"")
    } else {
        lowercase(text)
    }
}

/// ASCII-lowercases, borrowing when already lowercase.
pub(crate) fn lowercase(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// Replaces each doubled quote by one, borrowing when there is none.
pub(crate) fn unescape<'a>(inner: &'a str, doubled: &str, single: &str) -> Cow<'a, str> {
    if inner.contains(doubled) {
        Cow::Owned(inner.replace(doubled, single))
    } else {
        Cow::Borrowed(inner)
    }
}

/// Removes `n` delimiter bytes from each end (the delimiters are ASCII, so this stays on char
/// boundaries); an unterminated token has no closing delimiter and keeps its tail.
fn strip(text: &str, n: usize) -> &str {
    let inner = text.get(n..).unwrap_or("");
    inner.get(..inner.len().saturating_sub(n)).unwrap_or("")
}

/// Keywords after which `:name` starts a bind marker rather than separating a map key from its
/// value: the ones Cassandra's grammar puts directly before a term.
const MARKER_KEYWORDS: [&str; 10] = [
    "and",
    "between",
    "contains",
    "in",
    "key",
    "like",
    "limit",
    "of",
    "timestamp",
    "ttl",
];

/// Iterator of the tokens of a CQL text.
#[derive(Debug, Clone)]
pub struct Tokenizer<'a> {
    src: &'a str,
    pub(super) pos: usize,
    /// The last token's kind and span, which decide whether `:` starts a named marker. Kept as
    /// separate scalars, not an `Option<Token>`: writing a token piecewise and reading it back
    /// whole stalled store forwarding on every token (measured: a third of the time).
    pub(super) prev_kind: Option<TokenKind>,
    pub(super) prev_start: u32,
    pub(super) prev_end: u32,
}

impl<'a> Tokenizer<'a> {
    pub fn new(src: &'a str) -> Self {
        // Spans are u32: refuse (yield nothing) rather than wrap on a text the protocol could
        // never carry.
        let pos = if u32::try_from(src.len()).is_ok() {
            0
        } else {
            src.len()
        };
        Self {
            src,
            pos,
            prev_kind: None,
            prev_start: 0,
            prev_end: 0,
        }
    }

    pub fn source(&self) -> &'a str {
        self.src
    }

    fn colon_starts_marker(&self) -> bool {
        let Some(kind) = self.prev_kind else {
            return true;
        };
        match kind {
            TokenKind::Ident => {
                let text = self
                    .src
                    .get(self.prev_start as usize..self.prev_end as usize)
                    .unwrap_or("");
                MARKER_KEYWORDS.iter().any(|k| text.eq_ignore_ascii_case(k))
            }
            TokenKind::QuotedIdent
            | TokenKind::QMark
            | TokenKind::NamedMarker
            | TokenKind::RParen
            | TokenKind::RBracket
            | TokenKind::RBrace => false,
            kind => !kind.is_literal(),
        }
    }

    /// Lexes the token starting at `start` (not whitespace); `None` means "a comment, skip to
    /// `self.pos`".
    pub(super) fn lex(&mut self, start: usize) -> Option<(TokenKind, usize)> {
        use TokenKind as K;
        let b = self.src.as_bytes();
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let next = at(start + 1);
        let token = match b[start] {
            b'-' => match next {
                b'-' => {
                    self.pos = line_comment_end(b, start + 2);
                    return None;
                }
                b'=' => (K::MinusEq, start + 2),
                b'0'..=b'9' => lex_number(b, start + 1),
                b'P' => match iso_duration_end(b, start + 1) {
                    Some(end) => (K::Duration, end),
                    None => (K::Minus, start + 1),
                },
                b'n' | b'N' if has_prefix_ci(b, start + 1, b"nan") => (K::Float, start + 4),
                b'i' | b'I' if has_prefix_ci(b, start + 1, b"infinity") => (K::Float, start + 9),
                _ => (K::Minus, start + 1),
            },
            b'/' => match next {
                b'/' => {
                    self.pos = line_comment_end(b, start + 2);
                    return None;
                }
                b'*' => match find(b, start + 2, b"*/") {
                    Some(i) => {
                        self.pos = i + 2;
                        return None;
                    }
                    None => (K::UnterminatedComment, b.len()),
                },
                _ => (K::Slash, start + 1),
            },
            b'\'' => quoted(b, start, b'\'', K::String, K::UnterminatedString),
            b'"' => quoted(b, start, b'"', K::QuotedIdent, K::UnterminatedQuotedIdent),
            b'$' if next == b'$' => match find(b, start + 2, b"$$") {
                Some(i) => (K::DollarString, i + 2),
                None => (K::UnterminatedString, b.len()),
            },
            b'0' if matches!(next, b'x' | b'X') => {
                let mut i = start + 2;
                while at(i).is_ascii_hexdigit() {
                    i += 1;
                }
                (K::Hex, i)
            }
            b'0'..=b'9' if is_uuid_at(b, start) => (K::Uuid, start + UUID_LEN),
            b'0'..=b'9' => lex_number(b, start),
            c @ (b'a'..=b'z' | b'A'..=b'Z') => {
                if c.is_ascii_hexdigit() && is_uuid_at(b, start) {
                    (K::Uuid, start + UUID_LEN)
                } else {
                    let end = ident_end(b, start + 1);
                    // Only a word starting with `P` can be an ISO duration: test nothing else.
                    let iso = if c == b'P' {
                        iso_duration_end(b, start)
                    } else {
                        None
                    };
                    match iso.filter(|&d| d >= end) {
                        Some(d) => (K::Duration, d),
                        None => {
                            let word = &b[start..end];
                            if word.eq_ignore_ascii_case(b"nan")
                                || word.eq_ignore_ascii_case(b"infinity")
                            {
                                (K::Float, end)
                            } else {
                                (K::Ident, end)
                            }
                        }
                    }
                }
            }
            b':' if self.colon_starts_marker() => match next {
                b'a'..=b'z' | b'A'..=b'Z' => (K::NamedMarker, ident_end(b, start + 2)),
                b'"' => match quoted(
                    b,
                    start + 1,
                    b'"',
                    K::NamedMarker,
                    K::UnterminatedQuotedIdent,
                ) {
                    (K::NamedMarker, end) if end > start + 3 => (K::NamedMarker, end),
                    // `:""` names nothing: leave the colon alone, the `""` lexes next.
                    (K::NamedMarker, _) => (K::Colon, start + 1),
                    other => other,
                },
                _ => (K::Colon, start + 1),
            },
            b':' => (K::Colon, start + 1),
            b'?' => (K::QMark, start + 1),
            b'(' => (K::LParen, start + 1),
            b')' => (K::RParen, start + 1),
            b'[' => (K::LBracket, start + 1),
            b']' => (K::RBracket, start + 1),
            b'{' => (K::LBrace, start + 1),
            b'}' => (K::RBrace, start + 1),
            b',' => (K::Comma, start + 1),
            b';' => (K::Semicolon, start + 1),
            b'.' if next == b'.' => (K::Range, start + 2),
            b'.' => (K::Dot, start + 1),
            b'*' => (K::Star, start + 1),
            b'%' => (K::Percent, start + 1),
            b'=' => (K::Eq, start + 1),
            b'+' if next == b'=' => (K::PlusEq, start + 2),
            b'+' => (K::Plus, start + 1),
            b'<' if next == b'=' => (K::Le, start + 2),
            b'<' => (K::Lt, start + 1),
            b'>' if next == b'=' => (K::Ge, start + 2),
            b'>' => (K::Gt, start + 1),
            b'!' if next == b'=' => (K::Ne, start + 2),
            c => (K::Unexpected, start + utf8_len(c)),
        };
        Some(token)
    }
}

impl Iterator for Tokenizer<'_> {
    type Item = Token;

    // Inlined so the token reaches the caller in registers, not through a stack slot.
    #[inline]
    fn next(&mut self) -> Option<Token> {
        let b = self.src.as_bytes();
        loop {
            let start = class_end(b, self.pos, SPACE);
            self.pos = start;
            if start >= b.len() {
                return None;
            }
            if let Some((kind, end)) = self.lex(start) {
                // Every branch consumes at least one byte and ends on a char boundary (all
                // delimiters are ASCII), which is what makes the iterator terminate.
                let end = end.min(b.len());
                self.pos = end;
                self.prev_kind = Some(kind);
                self.prev_start = start as u32;
                self.prev_end = end as u32;
                return Some(Token {
                    kind,
                    start: start as u32,
                    end: end as u32,
                });
            }
        }
    }
}

/// Length of `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub(super) const UUID_LEN: usize = 36;

pub(super) fn is_uuid_at(b: &[u8], start: usize) -> bool {
    let Some(s) = b.get(start..start + UUID_LEN) else {
        return false;
    };
    // Cheapest rejection first: most identifiers that start with a hex letter are short. Then
    // every byte through the class table, without a branch per byte.
    s[8] == b'-'
        && s[13] == b'-'
        && s[18] == b'-'
        && s[23] == b'-'
        && s.iter().enumerate().fold(true, |ok, (i, &c)| {
            ok & (CLASSES[c as usize] & HEX != 0 || matches!(i, 8 | 13 | 18 | 23))
        })
}

/// Byte classes, looked up once per byte: the per-byte loops are most of the tokenizer's time.
const IDENT_CONT: u8 = 1;
pub(super) const DIGIT: u8 = 2;
pub(super) const SPACE: u8 = 4;
const HEX: u8 = 8;
const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] |= IDENT_CONT;
        }
        if b.is_ascii_digit() {
            t[c] |= DIGIT;
        }
        if b.is_ascii_hexdigit() {
            t[c] |= HEX;
        }
        // Lexer.g's WS: no form feed or vertical tab.
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            t[c] |= SPACE;
        }
        c += 1;
    }
    t
};

/// The first index at or after `i` whose byte is not in `class`.
#[inline]
pub(super) fn class_end(b: &[u8], i: usize, class: u8) -> usize {
    match b.get(i..) {
        Some(rest) => {
            i + rest
                .iter()
                .position(|&c| CLASSES[c as usize] & class == 0)
                .unwrap_or(rest.len())
        }
        None => i,
    }
}

pub(super) fn ident_end(b: &[u8], i: usize) -> usize {
    class_end(b, i, IDENT_CONT)
}

fn digits_end(b: &[u8], i: usize) -> usize {
    class_end(b, i, DIGIT)
}

fn has_prefix_ci(b: &[u8], at: usize, prefix: &[u8]) -> bool {
    b.get(at..at + prefix.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
}

fn find(b: &[u8], from: usize, needle: &[u8; 2]) -> Option<usize> {
    b.get(from..)?
        .windows(2)
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// A `--`/`//` comment runs to and including the next `\n` or `\r`, or to the end.
fn line_comment_end(b: &[u8], from: usize) -> usize {
    match b
        .get(from..)
        .and_then(|s| s.iter().position(|&c| c == b'\n' || c == b'\r'))
    {
        Some(i) => from + i + 1,
        None => b.len(),
    }
}

/// The first `q` at or after `i`, eight bytes at a time: string bodies are the longest runs
/// the tokenizer crosses, and a branch per byte costs more than the SWAR arithmetic.
fn find_byte(b: &[u8], mut i: usize, q: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ (ONES * u64::from(q));
        // The classic zero-byte test: exact up to the first zero byte, which is all we need.
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == q).map(|at| i + at)
}

/// A quoted token where a doubled quote is an escape.
pub(super) fn quoted(
    b: &[u8],
    start: usize,
    q: u8,
    done: TokenKind,
    open: TokenKind,
) -> (TokenKind, usize) {
    let mut i = start + 1;
    loop {
        match find_byte(b, i, q).map(|at| at - i) {
            None => return (open, b.len()),
            Some(off) if b.get(i + off + 1) == Some(&q) => i += off + 2,
            Some(off) => return (done, i + off + 1),
        }
    }
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Length of the duration unit at `i` (`y mo w d h m s ms us µs ns`, any case), if any.
fn duration_unit_len(b: &[u8], i: usize) -> Option<usize> {
    let c = b.get(i)?.to_ascii_lowercase();
    let next = b.get(i + 1).map(u8::to_ascii_lowercase);
    match (c, next) {
        (b'm', Some(b'o' | b's')) => Some(2),
        (b'u' | b'n', Some(b's')) => Some(2),
        (b'y' | b'w' | b'd' | b'h' | b'm' | b's', _) => Some(1),
        // U+00B5 MICRO SIGN, then `s`.
        (0xc2, Some(0xb5)) if matches!(b.get(i + 2), Some(b's' | b'S')) => Some(3),
        _ => None,
    }
}

/// Lexes an integer, float or digit-led duration whose digits start at `i` (after any `-`).
fn lex_number(b: &[u8], i: usize) -> (TokenKind, usize) {
    let digits = digits_end(b, i);
    if let Some(unit) = duration_unit_len(b, digits) {
        let mut end = digits + unit;
        loop {
            let d = digits_end(b, end);
            match duration_unit_len(b, d) {
                Some(unit) if d > end => end = d + unit,
                _ => return (TokenKind::Duration, end),
            }
        }
    }
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut end = digits;
    let mut kind = TokenKind::Integer;
    if at(end) == b'.' {
        match (at(end + 1), at(end + 2)) {
            // `1...` is `1.` then `..`; `1..` is `1` then `..` (Lexer.g's FLOAT predicates).
            (b'.', b'.') => return (TokenKind::Float, end + 1),
            (b'.', _) => return (TokenKind::Integer, end),
            _ => {
                end = digits_end(b, end + 1);
                kind = TokenKind::Float;
            }
        }
    }
    if matches!(at(end), b'e' | b'E') {
        let sign = usize::from(matches!(at(end + 1), b'+' | b'-'));
        let exp = digits_end(b, end + 1 + sign);
        if exp > end + 1 + sign {
            return (TokenKind::Float, exp);
        }
    }
    (kind, end)
}

/// End of an ISO 8601 duration whose `P` is at `p`, per Lexer.g's `DURATION` alternatives.
fn iso_duration_end(b: &[u8], p: usize) -> Option<usize> {
    if b.get(p) != Some(&b'P') {
        return None;
    }
    let i = p + 1;
    // The "alternative format" PYYYY-MM-DDThh:mm:ss.
    const ALT: &[u8; 19] = b"####-##-##T##:##:##";
    if let Some(s) = b.get(i..i + ALT.len())
        && s.iter().zip(ALT).all(|(&c, &f)| {
            if f == b'#' {
                c.is_ascii_digit()
            } else {
                c == f
            }
        })
    {
        return Some(i + ALT.len());
    }
    let d = digits_end(b, i);
    if d > i && b.get(d) == Some(&b'W') {
        return Some(d + 1);
    }
    let date_end = designators(b, i, b"YMD");
    let time_start = date_end.unwrap_or(i);
    if b.get(time_start) == Some(&b'T')
        && let Some(end) = designators(b, time_start + 1, b"HMS")
    {
        return Some(end);
    }
    date_end
}

/// Matches `(DIGIT+ X)+` where the designators X appear in the order of `order`, each at most
/// once; the end of the longest match.
fn designators(b: &[u8], mut i: usize, order: &[u8; 3]) -> Option<usize> {
    let mut end = None;
    let mut allowed = &order[..];
    loop {
        let d = digits_end(b, i);
        let Some(&x) = b.get(d).filter(|_| d > i) else {
            return end;
        };
        let Some(pos) = allowed.iter().position(|&o| o == x) else {
            return end;
        };
        allowed = &allowed[pos + 1..];
        i = d + 1;
        end = Some(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind as K;
    use proptest::prelude::*;

    fn kinds(src: &str) -> Vec<(TokenKind, &str)> {
        Tokenizer::new(src).map(|t| (t.kind, t.text(src))).collect()
    }

    #[test]
    fn identifiers_keywords_and_punctuation() {
        assert_eq!(
            kinds("SELECT a_1, B FROM ks.t WHERE x>=1;"),
            vec![
                (K::Ident, "SELECT"),
                (K::Ident, "a_1"),
                (K::Comma, ","),
                (K::Ident, "B"),
                (K::Ident, "FROM"),
                (K::Ident, "ks"),
                (K::Dot, "."),
                (K::Ident, "t"),
                (K::Ident, "WHERE"),
                (K::Ident, "x"),
                (K::Ge, ">="),
                (K::Integer, "1"),
                (K::Semicolon, ";"),
            ]
        );
        let ops = "( ) [ ] { } , ; . .. : * / % + - += -= = != < <= > >= ?";
        let got: Vec<_> = kinds(ops).into_iter().map(|(k, _)| k).collect();
        use K::*;
        assert_eq!(
            got,
            vec![
                LParen, RParen, LBracket, RBracket, LBrace, RBrace, Comma, Semicolon, Dot, Range,
                Colon, Star, Slash, Percent, Plus, Minus, PlusEq, MinusEq, Eq, Ne, Lt, Le, Gt, Ge,
                QMark
            ]
        );
        assert_eq!(
            kinds("true FALSE"),
            vec![(K::Ident, "true"), (K::Ident, "FALSE")]
        );
    }

    #[test]
    fn comments_are_skipped_and_do_not_nest() {
        assert_eq!(
            kinds("SELECT /* FROM x */ * FROM t -- from y\n// z\r;"),
            vec![
                (K::Ident, "SELECT"),
                (K::Star, "*"),
                (K::Ident, "FROM"),
                (K::Ident, "t"),
                (K::Semicolon, ";")
            ]
        );
        // Cassandra's MULTILINE_COMMENT is `'/*' .* '*/'` (non-greedy): the first `*/` closes it.
        assert_eq!(
            kinds("/* a /* b */ c */"),
            vec![(K::Ident, "c"), (K::Star, "*"), (K::Slash, "/")]
        );
        assert_eq!(kinds("a -- to the end"), vec![(K::Ident, "a")]);
        assert_eq!(
            kinds("a /* open"),
            vec![(K::Ident, "a"), (K::UnterminatedComment, "/* open")]
        );
    }

    #[test]
    fn strings_and_quoted_identifiers() {
        let src = r#"'it''s' $$a 'b' $ c$$ "My""Table" '' "" $$$$"#;
        let toks: Vec<_> = Tokenizer::new(src).collect();
        let got: Vec<_> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(
            got,
            vec![
                K::String,
                K::DollarString,
                K::QuotedIdent,
                K::String,
                K::QuotedIdent,
                K::DollarString
            ]
        );
        assert_eq!(toks[0].string_value(src).unwrap(), "it's");
        assert!(matches!(
            toks[1].string_value(src).unwrap(),
            Cow::Borrowed("a 'b' $ c")
        ));
        assert_eq!(toks[2].ident_value(src).unwrap(), "My\"Table");
        assert!(matches!(
            toks[3].string_value(src).unwrap(),
            Cow::Borrowed("")
        ));
        assert_eq!(toks[4].ident_value(src).unwrap(), "");
        assert_eq!(toks[5].string_value(src).unwrap(), "");
        assert!(matches!(
            Token {
                kind: K::Ident,
                start: 0,
                end: 3
            }
            .ident_value("abc"),
            Some(Cow::Borrowed("abc"))
        ));
        assert_eq!(
            Token {
                kind: K::Ident,
                start: 0,
                end: 3
            }
            .ident_value("aBc")
            .unwrap(),
            "abc"
        );
        assert_eq!(
            Token {
                kind: K::Ident,
                start: 0,
                end: 1
            }
            .string_value("a"),
            None
        );
    }

    #[test]
    fn unterminated_tokens_run_to_the_end() {
        assert_eq!(
            kinds("x 'abc"),
            vec![(K::Ident, "x"), (K::UnterminatedString, "'abc")]
        );
        assert_eq!(kinds("'it''"), vec![(K::UnterminatedString, "'it''")]);
        assert_eq!(kinds("$$abc$"), vec![(K::UnterminatedString, "$$abc$")]);
        assert_eq!(kinds("\"ab"), vec![(K::UnterminatedQuotedIdent, "\"ab")]);
        let t = Tokenizer::new("'ab").next().unwrap();
        assert_eq!(t.string_value("'ab"), None);
    }

    #[test]
    fn numbers_follow_lexer_g() {
        let cases: &[(&str, &[(TokenKind, &str)])] = &[
            ("42", &[(K::Integer, "42")]),
            ("-42", &[(K::Integer, "-42")]),
            ("x -3", &[(K::Ident, "x"), (K::Integer, "-3")]),
            (
                "x - 3",
                &[(K::Ident, "x"), (K::Minus, "-"), (K::Integer, "3")],
            ),
            (
                "x - y",
                &[(K::Ident, "x"), (K::Minus, "-"), (K::Ident, "y")],
            ),
            ("1.5", &[(K::Float, "1.5")]),
            ("1.", &[(K::Float, "1.")]),
            ("-1.5e-3", &[(K::Float, "-1.5e-3")]),
            ("1E10", &[(K::Float, "1E10")]),
            ("1e", &[(K::Integer, "1"), (K::Ident, "e")]),
            (
                "1..2",
                &[(K::Integer, "1"), (K::Range, ".."), (K::Integer, "2")],
            ),
            ("1...", &[(K::Float, "1."), (K::Range, "..")]),
            (".5", &[(K::Dot, "."), (K::Integer, "5")]),
            (
                "NaN -nan Infinity -INFINITY",
                &[
                    (K::Float, "NaN"),
                    (K::Float, "-nan"),
                    (K::Float, "Infinity"),
                    (K::Float, "-INFINITY"),
                ],
            ),
            ("nancy", &[(K::Ident, "nancy")]),
            (
                "0x 0xCafe 0X1",
                &[(K::Hex, "0x"), (K::Hex, "0xCafe"), (K::Hex, "0X1")],
            ),
        ];
        for (src, want) in cases {
            assert_eq!(kinds(src), *want, "{src}");
        }
    }

    #[test]
    fn uuids_win_over_identifiers_and_numbers() {
        let u = "5b6962dd-3f90-4c93-8f61-eabfb4a03ef1";
        assert_eq!(kinds(u), vec![(K::Uuid, u)]);
        let u2 = "DEADBEEF-3f90-4c93-8f61-eabfb4a03ef1";
        assert_eq!(kinds(u2), vec![(K::Uuid, u2)]);
        assert_eq!(
            kinds("deadbeef-1"),
            vec![(K::Ident, "deadbeef"), (K::Integer, "-1")]
        );
    }

    #[test]
    fn durations() {
        for d in [
            "1h30m",
            "12ms",
            "3us",
            "3µs",
            "5ns",
            "2mo",
            "1y2mo3w4d5h6m7s",
            "-3d",
            "1H",
        ] {
            assert_eq!(kinds(d), vec![(K::Duration, d)], "{d}");
        }
        for d in [
            "P1DT2H",
            "P2W",
            "PT1H30M",
            "P1Y2M3D",
            "P1M",
            "-P1D",
            "P0001-02-03T04:05:06",
            "PT5S",
        ] {
            assert_eq!(kinds(d), vec![(K::Duration, d)], "{d}");
        }
        // An identifier longer than the duration wins; lower-case designators are identifiers.
        assert_eq!(kinds("P1Dx"), vec![(K::Ident, "P1Dx")]);
        assert_eq!(kinds("p1d"), vec![(K::Ident, "p1d")]);
        assert_eq!(kinds("P"), vec![(K::Ident, "P")]);
        assert_eq!(kinds("1h30"), vec![(K::Duration, "1h"), (K::Integer, "30")]);
        assert_eq!(kinds("-P"), vec![(K::Minus, "-"), (K::Ident, "P")]);
    }

    #[test]
    fn named_markers_depend_on_context() {
        assert_eq!(
            kinds("a = :a"),
            vec![(K::Ident, "a"), (K::Eq, "="), (K::NamedMarker, ":a")]
        );
        assert_eq!(
            kinds("IN :list"),
            vec![(K::Ident, "IN"), (K::NamedMarker, ":list")]
        );
        assert_eq!(
            kinds("(:\"Q\"\"x\""),
            vec![(K::LParen, "("), (K::NamedMarker, ":\"Q\"\"x\"")]
        );
        let t = Tokenizer::new(":\"Q\"").next().unwrap();
        assert_eq!(t.ident_value(":\"Q\"").unwrap(), "Q");
        assert_eq!(
            Tokenizer::new(":Ab")
                .next()
                .unwrap()
                .ident_value(":Ab")
                .unwrap(),
            "ab"
        );
        assert_eq!(
            kinds("{'k':true}"),
            vec![
                (K::LBrace, "{"),
                (K::String, "'k'"),
                (K::Colon, ":"),
                (K::Ident, "true"),
                (K::RBrace, "}")
            ]
        );
        assert_eq!(
            kinds("{f:now}"),
            vec![
                (K::LBrace, "{"),
                (K::Ident, "f"),
                (K::Colon, ":"),
                (K::Ident, "now"),
                (K::RBrace, "}")
            ]
        );
        assert_eq!(
            kinds("= : a"),
            vec![(K::Eq, "="), (K::Colon, ":"), (K::Ident, "a")]
        );
        assert_eq!(
            kinds("=:\"\""),
            vec![(K::Eq, "="), (K::Colon, ":"), (K::QuotedIdent, "\"\"")]
        );
        assert_eq!(
            kinds("=:\"ab"),
            vec![(K::Eq, "="), (K::UnterminatedQuotedIdent, ":\"ab")]
        );
    }

    #[test]
    fn unexpected_characters_are_single_tokens() {
        assert_eq!(
            kinds("a ! $ _b é #"),
            vec![
                (K::Ident, "a"),
                (K::Unexpected, "!"),
                (K::Unexpected, "$"),
                (K::Unexpected, "_"),
                (K::Ident, "b"),
                (K::Unexpected, "é"),
                (K::Unexpected, "#"),
            ]
        );
        assert!(K::Unexpected.is_error() && !K::Ident.is_error());
    }

    #[test]
    fn normalize_ident_borrows_when_unchanged() {
        assert!(matches!(normalize_ident("abc"), Cow::Borrowed("abc")));
        assert!(matches!(normalize_ident("\"AbC\""), Cow::Borrowed("AbC")));
        assert_eq!(normalize_ident("AbC"), "abc");
        assert_eq!(normalize_ident("\"a\"\"b\""), "a\"b");
    }

    fn check_spans(src: &str) {
        let mut last_end = 0u32;
        for t in Tokenizer::new(src) {
            assert!(t.start >= last_end, "overlap at {t:?}");
            assert!(t.end > t.start, "empty token {t:?}");
            assert!(t.end as usize <= src.len(), "out of bounds {t:?}");
            assert!(src.is_char_boundary(t.start as usize) && src.is_char_boundary(t.end as usize));
            let _ = (t.string_value(src), t.ident_value(src));
            last_end = t.end;
        }
    }

    proptest! {
        #[test]
        fn find_byte_finds_the_first(b in proptest::collection::vec(any::<u8>(), 0..40), i in 0usize..42, q in any::<u8>()) {
            let want = b.get(i..).and_then(|s| s.iter().position(|&c| c == q)).map(|at| i + at);
            prop_assert_eq!(find_byte(&b, i, q), want);
        }

        #[test]
        fn spans_are_ordered_and_in_bounds(src in ".*") {
            check_spans(&src);
        }

        #[test]
        fn spans_are_ordered_on_cql_like_text(src in "[a-fA-FPTxX0-9 '\"$:?;,.()\\[\\]{}/*+=<>!µ\n-]{0,80}") {
            check_spans(&src);
        }

        #[test]
        fn spans_are_ordered_on_lossy_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            check_spans(&String::from_utf8_lossy(&bytes));
        }
    }
}
