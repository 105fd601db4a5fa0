//! HTML reduced to text for the body of an HTML-only message.

use mail_parser::decoders::html::html_to_text;

/// HTML reduced to text with mail-parser's `html_to_text` (drops `<head>`, `<style>`,
/// `<script>`, tags; decodes entities; `<br>` and `</p>` become line breaks) after a pre-pass
/// that drops `<title>` anywhere, closes an unclosed `<head>` at `<body>` and breaks lines at
/// block elements; then no-break spaces become spaces, lines are trimmed and blank lines
/// collapsed.
pub(super) fn html_text(html: &str) -> String {
    let text = html_to_text(&html_prepass(html)).replace('\u{a0}', " ");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

fn html_prepass(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "div",
        "p",
        "li",
        "tr",
        "table",
        "blockquote",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "hr",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "address",
    ];
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len() + html.len() / 16);
    let mut copied = 0;
    let mut pos = 0;
    let mut title_closed = true;
    let mut in_head = false;
    // Text seen since the last line break: a block boundary right after another one (as in
    // `</div><div>`) must not add a second break.
    let mut text_since_break = false;
    while let Some(off) = b[pos..].iter().position(|&c| c == b'<') {
        let lt = pos + off;
        text_since_break |= b[pos..lt].iter().any(|c| !c.is_ascii_whitespace());
        if b[lt..].starts_with(b"<!--") {
            match find_ci(&b[lt + 4..], b"-->") {
                Some(i) => pos = lt + 4 + i + 3,
                None => break,
            }
            continue;
        }
        let Some(gt) = b[lt..].iter().position(|&c| c == b'>').map(|i| lt + i) else {
            break;
        };
        pos = gt + 1;
        let closing = b.get(lt + 1) == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len = b[name_start..gt]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        let name = &html[name_start..name_start + name_len];
        let is = |t: &str| name.eq_ignore_ascii_case(t);
        if !closing && is("title") && title_closed {
            // Skip to the end of `</title…>`; remember a missing close so this stays linear.
            match find_ci(&b[gt..], b"</title").map(|i| gt + i) {
                Some(close) => {
                    let end = b[close..]
                        .iter()
                        .position(|&c| c == b'>')
                        .map_or(b.len(), |i| close + i + 1);
                    out.push_str(&html[copied..lt]);
                    copied = end;
                    pos = end;
                }
                None => title_closed = false,
            }
        } else if is("head") {
            in_head = !closing;
        } else if !closing && is("body") && in_head {
            // html_to_text drops everything after an unclosed <head>.
            out.push_str(&html[copied..lt]);
            out.push_str("</head>");
            copied = lt;
            in_head = false;
        } else if is("br") || (closing && is("p")) {
            // html_to_text breaks the line itself.
            text_since_break = false;
        } else if BLOCKS.iter().any(|t| is(t)) {
            if text_since_break {
                out.push_str(&html[copied..lt]);
                out.push_str("<br>");
                copied = lt;
                text_since_break = false;
            }
        } else if !closing && (is("td") || is("th")) {
            out.push_str(&html[copied..lt]);
            out.push(' ');
            copied = lt;
        }
    }
    out.push_str(&html[copied..]);
    out
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::tests::ok;

    #[test]
    fn html_only_is_reduced_to_text() {
        let m = ok("html_only");
        assert!(
            m.text.contains(
                "My broadband is down since Monday & the router shows a red \"LOS\" light."
            ),
            "{:?}",
            m.text
        );
        assert!(
            m.text.contains("Bob Smith — 张三's neighbour"),
            "{:?}",
            m.text
        );
        assert!(m.text.contains("Please send a technician <urgently>."));
        for bad in [
            "STYLE-MUST-NOT-LEAK",
            "font-family",
            "Fault report",
            "<p",
            "<br",
            "&nbsp;",
            "&amp;",
            "\u{a0}",
        ] {
            assert!(!m.text.contains(bad), "{bad:?} in {:?}", m.text);
        }
        assert_eq!(m.auto, None);
    }

    #[test]
    fn html_reduction_breaks_blocks_and_drops_stray_title() {
        let t = html_text(
            "<title>T-LEAK</title><div>one</div><div>two</div><table><tr><td>a</td><td>b</td></tr></table>",
        );
        assert_eq!(t, "one\ntwo\na b");
        let t =
            html_text("<html><head><title>T</title><meta x><body><p>kept</p><!-- <div> --></body>");
        assert_eq!(t, "kept");
        // An unclosed <title> does not swallow the text, and stays linear.
        let t = html_text(&"<title>x ".repeat(1000));
        assert!(t.contains('x'));
    }
}
