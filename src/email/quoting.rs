//! Quoted history: [`strip_quoted`] drops `>` lines and everything from an attribution or
//! separator line on, so the classifier sees what the customer wrote this time.

/// `text` without quoted history: lines starting with `>`, and everything from the first
/// attribution / separator line on. If nothing is left above it (a bottom-posted reply), the
/// text below it minus the quoted lines.
pub fn strip_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = (0..lines.len()).find(|&i| is_history_start(&lines, i));
    let quoted = |i: &usize| lines[*i].trim_start().starts_with('>');
    let top = join_lines(
        &lines,
        (0..cut.unwrap_or(lines.len())).filter(|i| !quoted(i)),
    );
    match cut {
        Some(cut) if top.is_empty() => join_lines(
            &lines,
            (cut + 1..lines.len()).filter(|i| !quoted(i) && !is_history_start(&lines, *i)),
        ),
        _ => top,
    }
}

fn join_lines(lines: &[&str], keep: impl Iterator<Item = usize>) -> String {
    let kept: Vec<&str> = keep.map(|i| lines[i].trim_end()).collect();
    kept.join("\n").trim().to_string()
}

fn is_history_start(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim();
    if line.is_empty() || line.starts_with('>') {
        return false;
    }
    let next = lines.get(i + 1).map_or("", |l| l.trim());
    let wrote = |s: &str| s.ends_with("wrote:");
    let xiedao = |s: &str| s.ends_with("写道：") || s.ends_with("写道:");
    if (line.starts_with("On ") && (wrote(line) || wrote(next)))
        || (wrote(line) && line.contains('@'))
        || xiedao(line)
        || (line.starts_with('在') && xiedao(next))
    {
        return true;
    }
    for prefix in ["发件人:", "发件人：", "寄件者:", "寄件者："] {
        if line.starts_with(prefix) {
            return true;
        }
    }
    if starts_with_ci(line, "from:")
        && lines[i + 1..]
            .iter()
            .take(4)
            .any(|l| starts_with_ci(l.trim(), "sent:"))
    {
        return true;
    }
    // "-----Original Message-----", "------------------ 原始邮件 ------------------", and an
    // Outlook "______" rule directly above a From: line.
    if line.starts_with("--") {
        let inner = line
            .trim_matches(|c: char| c == '-' || c.is_whitespace())
            .to_lowercase();
        if matches!(
            inner.as_str(),
            "original message" | "original" | "原始邮件" | "原始郵件" | "回复的原邮件"
        ) {
            return true;
        }
    }
    line.len() >= 10
        && line.chars().all(|c| c == '_')
        && (starts_with_ci(next, "from:") || next.starts_with("发件人"))
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_history_forms() {
        let cases = [
            (
                "Fixed now?\n\nOn Tue, 24 Nov 2026 at 21:03, A <a@b.c> wrote:\n> old",
                "Fixed now?",
            ),
            (
                "Fixed now?\nOn Tue, 24 Nov 2026 at 21:03, A <\na@b.c> wrote:\n> old",
                "Fixed now?",
            ),
            (
                "still down\n-----Original Message-----\nFrom: x\nSent: y\n\nold text",
                "still down",
            ),
            (
                "still down\n\nFrom: CS <cs@gw.test>\nSent: Tuesday\nTo: me\nSubject: x\n\nold",
                "still down",
            ),
            (
                "还是不行\n\n发件人: 客服中心\n发送时间: 2026年11月25日\n旧内容",
                "还是不行",
            ),
            (
                "还是不行\n------------------ 原始邮件 ------------------\n旧内容",
                "还是不行",
            ),
            (
                "还是不行\n张三 <a@b.c> 于2026年11月24日周二 21:03写道：\n> 旧",
                "还是不行",
            ),
            ("line one\n> quoted\nline two", "line one\nline two"),
            // Bottom-posted reply: keep what is below the quote.
            (
                "On Mon, A <a@b.c> wrote:\n> old\n\nmy reply below",
                "my reply below",
            ),
            (
                "From: me\nTo: you\nplain text that mentions From: lines",
                "From: me\nTo: you\nplain text that mentions From: lines",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(strip_quoted(text), want, "{text:?}");
        }
    }
}
