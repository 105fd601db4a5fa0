//! Charsets: labels seen in real mail that mail-parser does not know, mapped to ones it does
//! (for body parts and encoded-words), and the guess for bytes whose label is missing,
//! unknown or wrong (UTF-8, then GB18030).

use mail_parser::decoders::charsets::DecoderFnc;
use mail_parser::decoders::charsets::map::charset_decoder;

/// A decoder for `label`, also for labels mail-parser does not know. `None` = UTF-8.
pub(super) fn decoder_for(label: &str) -> Option<DecoderFnc> {
    charset_decoder(label.as_bytes())
        .or_else(|| alias(label).and_then(|l| charset_decoder(l.as_bytes())))
}

/// Labels seen in real mail that mail-parser 0.11 does not know, mapped to one it does.
/// (It already knows gbk, x-gbk, gb2312, gb_2312-80, cp936, ms936, big5, big5-hkscs, cn-big5,
/// iso-2022-jp, shift_jis, ms932, euc-jp, euc-kr, ks_c_5601-1987 and the WHATWG labels.)
pub(super) fn alias(label: &str) -> Option<&'static str> {
    let l = label
        .trim()
        .trim_matches(['"', '\''])
        .to_ascii_lowercase()
        .replace('_', "-");
    Some(match l.as_str() {
        // GB2312 / GBK / GB18030 family: GB18030 decodes all of them.
        "eucgb2312-cn" | "euc-cn" | "euccn" | "x-euc-cn" | "x-euc" | "cn-gb" | "x-cp936"
        | "936" | "gb2312-80" | "gb2312-1980" | "gb-2312-1980" | "csgb231280" | "gb-18030"
        | "gb18030-2000" | "gb18030-2005" | "gb18030-2022" | "x-gb18030" | "cp54936"
        | "windows-54936" | "x-mac-chinesesimp" => "gb18030",
        // Big5 (mail-parser's Big5 is the WHATWG one, i.e. with HKSCS).
        "big5hkscs" | "big5-hkscs-2004" | "big5-hkscs-2008" | "cp950" | "ms950" | "windows-950"
        | "x-windows-950" | "x-big5" | "big-5" | "big5-2003" | "big5-eten" | "x-ms950-hkscs"
        | "x-mac-chinesetrad" => "big5",
        "iso-2022-jp-1" | "iso-2022-jp-2" | "iso-2022-jp-3" | "iso-2022-jp-2004"
        | "csiso2022jp2" => "iso-2022-jp",
        "cp932" | "cswindows31j" | "x-ms-cp932" | "windows-932" => "shift_jis",
        "eucjp" | "x-eucjp" | "cp51932" | "euc-jp-ms" => "euc-jp",
        "ks-c-5601" | "cp949" | "uhc" | "x-uhc" | "x-windows-949" | "euckr" | "ks-c-5601-1989" => {
            "euc-kr"
        }
        _ => return None,
    })
}

pub(super) fn is_utf8_label(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    matches!(
        l.as_str(),
        "utf-8" | "utf8" | "unicode-1-1-utf-8" | "x-unicode20utf8"
    )
}

pub(super) fn is_ascii_label(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    matches!(l.as_str(), "us-ascii" | "ascii" | "ansi_x3.4-1968") || is_utf8_label(&l)
}

/// Bytes whose label is missing, unknown or wrong: UTF-8 if valid, else GB18030 if it decodes
/// without errors (mislabelled Chinese mail is what we mostly see), else `last_resort`, else
/// lossy UTF-8.
pub(super) fn decode_guess(bytes: &[u8], last_resort: Option<DecoderFnc>) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    if let Some(gb) = charset_decoder(b"gb18030") {
        let s = gb(bytes);
        if !s.contains(char::REPLACEMENT_CHARACTER) {
            return s;
        }
    }
    match last_resort {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::headers::relabel_encoded_words;
    use crate::email::tests::ok;
    use crate::email::{MAX_EMAIL_BYTES, parse};

    #[test]
    fn gb18030_keeps_four_byte_sequences() {
        let m = ok("gb18030_fault");
        assert_eq!(m.subject, "故障报修：光纤宽带断网");
        assert_eq!(
            m.text,
            "您好，我家光纤宽带从昨天晚上开始断网，光猫LOS灯一直红灯闪烁🔴，重启了好几次也不行。\n宽带账号：020-88886666，地址：广州市越秀区中山五路2号3楼。\n请尽快安排师傅上门维修，谢谢！联系电话13800138000。\n"
        );
        assert_eq!(m.auto, None);
    }

    #[test]
    fn big5_8bit_with_backslash_trail_byte() {
        let m = ok("big5_inquiry");
        assert_eq!(m.subject, "查詢：光纖寬頻升級資費");
        assert_eq!(m.from_name.as_deref(), Some("陳小姐"));
        assert_eq!(
            m.text,
            "您好：\n請問我現在的寬頻是100M，想升級到1000M，每月費用是多少？需要換光貓嗎？\n光貓的WiFi功能可以單獨關閉嗎？另外營業廳週末有沒有開？\n謝謝！\n陳小姐\n"
        );
        assert!(m.text.contains('功'));
    }

    #[test]
    fn iso2022jp() {
        let m = ok("iso2022jp");
        assert_eq!(m.subject, "お問い合わせ：光回線の料金について");
        assert_eq!(m.from_name.as_deref(), Some("山田太郎"));
        assert_eq!(
            m.text,
            "お世話になっております。\n現在契約している光回線プランの月額料金と、解約手数料について教えてください。\nよろしくお願いいたします。\n山田太郎\n"
        );
    }

    #[test]
    fn eucgb2312_cn_alias_in_body_and_subject() {
        let m = ok("gb2312_alias");
        assert_eq!(m.subject, "咨询：怎么查询本月话费和剩余流量");
        assert_eq!(
            m.text,
            "你好，请问怎么查询本月的话费和剩余流量？\n发短信到10001可以查吗？需要发什么内容？\n谢谢。\n"
        );
        assert_eq!(m.from_name.as_deref(), Some("Wang Wu"));
    }

    #[test]
    fn x_gbk_alias_keeps_gbk_only_characters() {
        let m = ok("x_gbk_alias");
        assert_eq!(m.subject, "报修：固话没有拨号音");
        assert_eq!(m.from_name.as_deref(), Some("王喆"));
        assert_eq!(
            m.text,
            "客服你好，我是王喆，家里的固定电话从今天早上开始拿起来没有拨号音，打不出去也打不进来。\n号码020-83334444，麻烦派人来检查一下线路。\n"
        );
    }

    #[test]
    fn aliases_mail_parser_does_not_know() {
        for label in [
            "eucgb2312_cn",
            "x-euc-cn",
            "EUC-CN",
            "gb2312-80",
            "x-gb18030",
        ] {
            assert!(decoder_for(label).is_some(), "{label}");
        }
        for label in ["cp950", "big5hkscs", "iso-2022-jp-2", "cp932", "cp949"] {
            assert!(decoder_for(label).is_some(), "{label}");
        }
        // GBK bytes for 王喆 under an unknown-to-mail-parser label, in a header and a body.
        let raw = "From: =?x-euc-cn?B?zfWGtA==?= <A@Example.ORG>\nTo: cs@gw.test\nSubject: =?euc-cn?Q?=CD=F5=86=B4?=\nContent-Type: text/plain; charset=cp936-unknown\nContent-Transfer-Encoding: base64\n\nzfWGtA==\n";
        let m = parse(raw.as_bytes(), MAX_EMAIL_BYTES).unwrap();
        assert_eq!(m.from_name.as_deref(), Some("王喆"));
        assert_eq!(m.from, "a@example.org");
        assert_eq!(m.subject, "王喆");
        // Unknown label, not UTF-8: GB18030 decodes it cleanly, so it is used.
        assert_eq!(m.text, "王喆");
        assert_eq!(relabel_encoded_words("=?utf-8?B?YQ==?= plain"), None);
    }

    #[test]
    fn raw_8bit_gbk_subject_and_body_without_charset() {
        let mut raw = b"From: a@example.cn\nSubject: ".to_vec();
        raw.extend_from_slice(&[0xB1, 0xA8, 0xD0, 0xDE]); // 报修
        raw.extend_from_slice(b"\n\n");
        raw.extend_from_slice(&[0xB6, 0xCF, 0xCD, 0xF8, b'\n']); // 断网
        let m = parse(&raw, MAX_EMAIL_BYTES).unwrap();
        assert_eq!(m.subject, "报修");
        assert_eq!(m.text, "断网\n");

        let labelled = |charset: &str, body: &[u8]| {
            let mut raw = format!(
                "From: a@example.cn\nSubject: s\nContent-Type: text/plain; charset={charset}\n\n"
            )
            .into_bytes();
            raw.extend_from_slice(body);
            parse(&raw, MAX_EMAIL_BYTES).unwrap().text
        };
        // GBK bytes labelled UTF-8 or US-ASCII.
        assert_eq!(labelled("utf-8", &[0xB6, 0xCF, 0xCD, 0xF8]), "断网");
        assert_eq!(labelled("us-ascii", &[0xB6, 0xCF, 0xCD, 0xF8]), "断网");
        // UTF-8 labelled US-ASCII.
        assert_eq!(labelled("us-ascii", "断网".as_bytes()), "断网");
        // Latin-1 labelled US-ASCII that GB18030 cannot decode: Windows-1252.
        assert_eq!(labelled("us-ascii", b"caf\xe9 ok"), "café ok");
        // Proper labels are left alone.
        assert_eq!(labelled("iso-8859-1", b"caf\xe9"), "café");
        assert_eq!(labelled("gbk", &[0xB6, 0xCF, 0xCD, 0xF8]), "断网");
    }
}
