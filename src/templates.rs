//! Message templates (minijinja), one file per `<name>.<lang>.txt`. The built-in set is
//! compiled into the binary; `templates.dir` overrides any of them by file name.

use crate::domain::Lang;
use minijinja::Environment;
use std::path::Path;

const BUILTIN: &[(&str, &str)] = &[
    ("ack.zh-CN.txt", include_str!("../templates/ack.zh-CN.txt")),
    ("ack.en.txt", include_str!("../templates/ack.en.txt")),
    (
        "reply.zh-CN.txt",
        include_str!("../templates/reply.zh-CN.txt"),
    ),
    ("reply.en.txt", include_str!("../templates/reply.en.txt")),
    (
        "reply_subject.zh-CN.txt",
        include_str!("../templates/reply_subject.zh-CN.txt"),
    ),
    (
        "reply_subject.en.txt",
        include_str!("../templates/reply_subject.en.txt"),
    ),
    (
        "escalate.zh-CN.txt",
        include_str!("../templates/escalate.zh-CN.txt"),
    ),
    (
        "escalate.en.txt",
        include_str!("../templates/escalate.en.txt"),
    ),
    (
        "opt_out.zh-CN.txt",
        include_str!("../templates/opt_out.zh-CN.txt"),
    ),
    (
        "opt_out.en.txt",
        include_str!("../templates/opt_out.en.txt"),
    ),
    (
        "opt_in.zh-CN.txt",
        include_str!("../templates/opt_in.zh-CN.txt"),
    ),
    ("opt_in.en.txt", include_str!("../templates/opt_in.en.txt")),
    (
        "survey_thanks.zh-CN.txt",
        include_str!("../templates/survey_thanks.zh-CN.txt"),
    ),
    (
        "survey_thanks.en.txt",
        include_str!("../templates/survey_thanks.en.txt"),
    ),
    (
        "fees.zh-CN.txt",
        include_str!("../templates/fees.zh-CN.txt"),
    ),
    ("fees.en.txt", include_str!("../templates/fees.en.txt")),
    (
        "points.zh-CN.txt",
        include_str!("../templates/points.zh-CN.txt"),
    ),
    ("points.en.txt", include_str!("../templates/points.en.txt")),
    (
        "progress.zh-CN.txt",
        include_str!("../templates/progress.zh-CN.txt"),
    ),
    (
        "progress.en.txt",
        include_str!("../templates/progress.en.txt"),
    ),
    (
        "progress_unknown.zh-CN.txt",
        include_str!("../templates/progress_unknown.zh-CN.txt"),
    ),
    (
        "progress_unknown.en.txt",
        include_str!("../templates/progress_unknown.en.txt"),
    ),
    (
        "email_subject.zh-CN.txt",
        include_str!("../templates/email_subject.zh-CN.txt"),
    ),
    (
        "email_subject.en.txt",
        include_str!("../templates/email_subject.en.txt"),
    ),
    (
        "email.zh-CN.html",
        include_str!("../templates/email.zh-CN.html"),
    ),
    ("email.en.html", include_str!("../templates/email.en.html")),
    (
        "sla_notice.zh-CN.txt",
        include_str!("../templates/sla_notice.zh-CN.txt"),
    ),
    (
        "sla_notice.en.txt",
        include_str!("../templates/sla_notice.en.txt"),
    ),
    (
        "sla_notice_subject.zh-CN.txt",
        include_str!("../templates/sla_notice_subject.zh-CN.txt"),
    ),
    (
        "sla_notice_subject.en.txt",
        include_str!("../templates/sla_notice_subject.en.txt"),
    ),
    (
        "fees_unavailable.zh-CN.txt",
        include_str!("../templates/fees_unavailable.zh-CN.txt"),
    ),
    (
        "fees_unavailable.en.txt",
        include_str!("../templates/fees_unavailable.en.txt"),
    ),
    (
        "points_unavailable.zh-CN.txt",
        include_str!("../templates/points_unavailable.zh-CN.txt"),
    ),
    (
        "points_unavailable.en.txt",
        include_str!("../templates/points_unavailable.en.txt"),
    ),
    (
        "visit_reopened.zh-CN.txt",
        include_str!("../templates/visit_reopened.zh-CN.txt"),
    ),
    (
        "visit_reopened.en.txt",
        include_str!("../templates/visit_reopened.en.txt"),
    ),
    (
        "return_visit.zh-CN.txt",
        include_str!("../templates/return_visit.zh-CN.txt"),
    ),
    (
        "return_visit.en.txt",
        include_str!("../templates/return_visit.en.txt"),
    ),
    (
        "return_visit_subject.zh-CN.txt",
        include_str!("../templates/return_visit_subject.zh-CN.txt"),
    ),
    (
        "return_visit_subject.en.txt",
        include_str!("../templates/return_visit_subject.en.txt"),
    ),
    (
        "payment_reminder.zh-CN.txt",
        include_str!("../templates/payment_reminder.zh-CN.txt"),
    ),
    (
        "payment_reminder.en.txt",
        include_str!("../templates/payment_reminder.en.txt"),
    ),
];

pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// The most instructions one rendering may run (minijinja's fuel): a template that loops
/// without end (`{% for i in range(99999) %}{% for j in range(99999) %}…`) fails after
/// about a millisecond of work instead of holding a thread. Every template here needs a few
/// hundred.
pub const TEMPLATE_FUEL: u64 = 100_000;

/// The longest text a rendering may produce; longer fails (an SMS is far shorter, a mail's
/// text part too).
pub const MAX_RENDERED: usize = 64 * 1024;

impl Templates {
    /// Loads the built-in templates and the overrides in `dir`.
    ///
    /// # Errors
    /// An unreadable override or a template with a syntax error, naming the file.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Templates> {
        let mut env = Environment::new();
        // `.html` templates escape what they insert; `.txt` ones do not.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        for (name, src) in BUILTIN {
            let mut text = src.to_string();
            if let Some(d) = dir {
                let p = d.join(name);
                if p.is_file() {
                    text = std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("template {}: {e}", p.display()))?;
                }
            }
            let text = text.trim_end_matches('\n').to_string();
            env.add_template_owned(name.to_string(), text)
                .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
        }
        Ok(Templates { env })
    }

    /// Renders `<name>.<lang>.txt`.
    ///
    /// # Errors
    /// Unknown template or a variable the context lacks.
    pub fn render(
        &self,
        name: &str,
        lang: Lang,
        ctx: minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        self.render_file(&format!("{name}.{}.txt", lang.as_str()), ctx)
    }

    /// Renders `<name>.<lang>.html` (auto-escaped).
    ///
    /// # Errors
    /// As [`Templates::render`].
    /// The text of `<name>.<lang>.txt` (a campaign takes a stored template by name).
    pub fn source(&self, name: &str, lang: Lang) -> Option<String> {
        self.env
            .get_template(&format!("{name}.{}.txt", lang.as_str()))
            .ok()
            .map(|t| t.source().to_string())
    }

    pub fn render_html(
        &self,
        name: &str,
        lang: Lang,
        ctx: minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        self.render_file(&format!("{name}.{}.html", lang.as_str()), ctx)
    }

    fn render_file(&self, file: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        self.env.get_template(file)?.render(ctx)
    }
}
