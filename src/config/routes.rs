//! `routes.yaml`: which departments get which warnings, over which channels, with what deadlines,
//! and which unit supervises them.
//!
//! ```yaml
//! channels:
//!   - {id: zjj-hook, type: webhook, url: "https://zjj.example.gov.cn/yujing", secret: zjj-hook}
//!   - {id: slj-ding, type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=...", secret: slj-ding}
//!   - {id: board, type: mqtt}                    # topic yujing/warnings/{department}
//! departments:
//!   zjj: {channels: [zjj-hook, board]}
//! supervisor: dcs                               # copied when a deadline is missed twice
//! deadlines:                                    # per level: acknowledge and handle within
//!   red: {ack: 15m, handle: 2h}
//! routes:
//!   - match: {kind: water, level: [orange, red]}
//!     to: [site, yjj]                           # `site`: the site's own departments
//! ```
//!
//! Every matching route adds its departments; deadlines are the tightest of the defaults and the
//! matching routes. A warning no route matches goes to its site's departments.

use super::yaml::{Ctx, Diag, Pos, Spanned};
use super::Registry;
use crate::event::Level;
use crate::time::Millis;

/// How a channel delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// HTTP POST of the warning document, signed `X-Yujing-Signature: sha256=<hmac>` over
    /// `X-Yujing-Timestamp`, a dot and the body.
    Webhook,
    /// WeCom (企业微信) group robot: markdown message.
    Wecom,
    /// DingTalk (钉钉) group robot: markdown message; signed URL when a secret is set.
    Dingtalk,
    /// MQTT publish to `yujing/warnings/{department}`.
    Mqtt,
    /// Kafka: the warning document to `topic`, keyed by site id (idempotent producer).
    Kafka,
}

impl ChannelKind {
    pub const NAMES: [&'static str; 5] = ["webhook", "wecom", "dingtalk", "mqtt", "kafka"];
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
    fn parse(s: &str) -> Option<ChannelKind> {
        match s {
            "webhook" => Some(ChannelKind::Webhook),
            "wecom" => Some(ChannelKind::Wecom),
            "dingtalk" => Some(ChannelKind::Dingtalk),
            "mqtt" => Some(ChannelKind::Mqtt),
            "kafka" => Some(ChannelKind::Kafka),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: String,
    pub kind: ChannelKind,
    pub url: Option<String>,
    /// Name of the secret in yujing.toml `[secrets]` (webhook HMAC key, DingTalk signing key).
    pub secret: Option<String>,
    /// Kafka channels: the topic (default `yujing.warnings`).
    pub topic: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    pub ack: Option<Millis>,
    pub handle: Option<Millis>,
}

impl Deadlines {
    fn tighten(&mut self, other: Deadlines) {
        fn min(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
            match (a, b) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, None) => x,
                (None, y) => y,
            }
        }
        self.ack = min(self.ack, other.ack);
        self.handle = min(self.handle, other.handle);
    }
}

/// Who a route sends to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The departments responsible for the warning's site (sites.yaml).
    Site,
    Department(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Match {
    pub kinds: Vec<String>,
    pub sites: Vec<String>,
    pub rules: Vec<String>,
    pub levels: Vec<Level>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub when: Match,
    pub to: Vec<Target>,
    pub deadlines: [Deadlines; 4],
    pub supervisor: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Routes {
    pub channels: Vec<Channel>,
    /// Department id -> the channel ids it receives on.
    pub departments: Vec<(String, Vec<String>)>,
    pub supervisor: Option<String>,
    pub deadlines: [Deadlines; 4],
    pub routes: Vec<Route>,
}

/// What routing decided for one warning.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub departments: Vec<String>,
    pub deadlines: Deadlines,
    pub supervisor: Option<String>,
}

impl Routes {
    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The channels a department receives on (none if routes.yaml names none for it).
    pub fn channels_of(&self, department: &str) -> &[String] {
        self.departments
            .iter()
            .find(|(d, _)| d == department)
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&[])
    }

    pub fn resolve(
        &self,
        kind: &str,
        site: &str,
        rule: &str,
        level: Level,
        site_departments: &[String],
    ) -> Resolved {
        let mut departments: Vec<String> = Vec::new();
        let mut deadlines = self.deadlines[level.index()];
        let mut supervisor = None;
        let add = |d: &str, v: &mut Vec<String>| {
            if !v.iter().any(|x| x == d) {
                v.push(d.to_string());
            }
        };
        let mut matched = false;
        for r in &self.routes {
            let m = &r.when;
            let hit = (m.kinds.is_empty() || m.kinds.iter().any(|k| k == kind))
                && (m.sites.is_empty() || m.sites.iter().any(|s| s == site))
                && (m.rules.is_empty() || m.rules.iter().any(|s| s == rule))
                && (m.levels.is_empty() || m.levels.contains(&level));
            if !hit {
                continue;
            }
            matched = true;
            for t in &r.to {
                match t {
                    Target::Site => site_departments
                        .iter()
                        .for_each(|d| add(d, &mut departments)),
                    Target::Department(d) => add(d, &mut departments),
                }
            }
            deadlines.tighten(r.deadlines[level.index()]);
            if supervisor.is_none() {
                supervisor = r.supervisor.clone();
            }
        }
        if !matched {
            site_departments
                .iter()
                .for_each(|d| add(d, &mut departments));
        }
        Resolved {
            departments,
            deadlines,
            supervisor: supervisor.or_else(|| self.supervisor.clone()),
        }
    }
}

fn deadlines_table(ctx: &Ctx, node: &marked_yaml::Node, what: &str) -> [Deadlines; 4] {
    let mut out = [Deadlines::default(); 4];
    let Some(o) = ctx.obj(node, what, &Level::ALL.map(Level::as_str)) else {
        return out;
    };
    for l in Level::ALL {
        if let Some(n) = o.node(l.as_str()) {
            let w = format!("{what}.{}", l.as_str());
            if let Some(d) = ctx.obj(n, &w, &["ack", "handle"]) {
                out[l.index()] = Deadlines {
                    ack: d.duration("ack").map(|s| s.v),
                    handle: d.duration("handle").map(|s| s.v),
                };
            }
        }
    }
    out
}

/// Load and check routes.yaml against the registry (departments must exist).
pub fn load(file: &str, text: &str, registry: &Registry) -> Result<Routes, Vec<Diag>> {
    let (routes, diags) = load_all(file, text, registry);
    if diags.is_empty() {
        Ok(routes)
    } else {
        Err(diags)
    }
}

/// As [`load`], but also the part that loaded when there are errors (so that later checks can
/// report theirs too).
pub fn load_all(file: &str, text: &str, registry: &Registry) -> (Routes, Vec<Diag>) {
    let ctx = Ctx::new(file);
    let Some(root) = ctx.parse(text) else {
        return (Routes::default(), ctx.into_diags());
    };
    let mut routes = Routes::default();
    let Some(top) = ctx.obj(
        &root,
        "routes file",
        &[
            "channels",
            "departments",
            "supervisor",
            "deadlines",
            "routes",
        ],
    ) else {
        return (Routes::default(), ctx.into_diags());
    };
    if let Some(n) = top.node("channels") {
        for c in ctx.seq(n, "channels") {
            if let Some(channel) = read_channel(&ctx, c, &routes.channels) {
                routes.channels.push(channel);
            }
        }
    }
    if let Some(n) = top.node("departments") {
        read_departments(&ctx, n, registry, &mut routes);
    }
    if let Some(s) = top.string("supervisor") {
        known_department(&ctx, registry, &s);
        routes.supervisor = Some(s.v);
    }
    if let Some(n) = top.node("deadlines") {
        routes.deadlines = deadlines_table(&ctx, n, "deadlines");
    }
    if let Some(n) = top.node("routes") {
        for r in ctx.seq(n, "routes") {
            if let Some(route) = read_route(&ctx, r, registry) {
                routes.routes.push(route);
            }
        }
    }
    (routes, ctx.into_diags())
}

fn read_channel(ctx: &Ctx, c: &marked_yaml::Node, declared: &[Channel]) -> Option<Channel> {
    let o = ctx.obj(c, "channel", &["id", "type", "url", "secret", "topic"])?;
    let (Some(id), Some(kind)) = (o.req_string("id"), o.req_string("type")) else {
        return None;
    };
    let Some(k) = ChannelKind::parse(&kind.v) else {
        ctx.err(
            kind.pos,
            format!(
                "unknown channel type `{}` (expected one of: {})",
                kind.v,
                ChannelKind::NAMES.join(", ")
            ),
        );
        return None;
    };
    if declared.iter().any(|x| x.id == id.v) {
        ctx.err(id.pos, format!("channel `{}` is declared twice", id.v));
    }
    let url = o.string("url");
    match (&url, k) {
        (None, ChannelKind::Webhook | ChannelKind::Wecom | ChannelKind::Dingtalk) => {
            ctx.err(o.pos(), format!("channel `{}` needs a `url`", id.v))
        }
        (Some(u), _) if !(u.v.starts_with("http://") || u.v.starts_with("https://")) => ctx.err(
            u.pos,
            format!(
                "channel `{}`: url must start with http:// or https://",
                id.v
            ),
        ),
        (Some(u), ChannelKind::Mqtt) => ctx.err(
            u.pos,
            "an mqtt channel publishes to yujing/warnings/{department}: it takes no url",
        ),
        (Some(u), ChannelKind::Kafka) => ctx.err(
            u.pos,
            "a kafka channel sends to its `topic` on the [kafka] brokers: it takes no url",
        ),
        _ => {}
    }
    let topic = o.string("topic");
    if let Some(t) = &topic {
        if k != ChannelKind::Kafka {
            ctx.err(t.pos, "only a kafka channel takes a `topic`");
        }
    }
    Some(Channel {
        id: id.v,
        kind: k,
        url: url.map(|u| u.v),
        secret: o.string("secret").map(|s| s.v),
        topic: topic.map(|t| t.v),
    })
}

/// `departments`: each department's channels.
fn read_departments(ctx: &Ctx, n: &marked_yaml::Node, registry: &Registry, routes: &mut Routes) {
    match n.as_mapping() {
        Some(map) => {
            for (k, v) in map.iter() {
                let id = Spanned {
                    v: k.as_str().to_string(),
                    pos: Pos::of(k.span()),
                };
                known_department(ctx, registry, &id);
                let what = format!("departments.{}", id.v);
                let Some(o) = ctx.obj(v, &what, &["channels"]) else {
                    continue;
                };
                let chans = o.strings("channels");
                for c in &chans {
                    if routes.channel(&c.v).is_none() {
                        ctx.err(c.pos, format!("unknown channel `{}`", c.v));
                    }
                }
                routes
                    .departments
                    .push((id.v, chans.into_iter().map(|c| c.v).collect()));
            }
        }
        None => ctx.err(
            Pos::of(n.span()),
            "departments must be a mapping of department id to its channels",
        ),
    }
}

/// One route: what it matches, where it sends, its deadlines and supervisor.
fn read_route(ctx: &Ctx, r: &marked_yaml::Node, registry: &Registry) -> Option<Route> {
    let o = ctx.obj(r, "route", &["match", "to", "deadlines", "supervisor"])?;
    let when = match o.node("match") {
        Some(m) => read_match(ctx, m, registry),
        None => Match::default(),
    };
    let mut to = Vec::new();
    let targets = o.strings("to");
    if targets.is_empty() {
        to.push(Target::Site);
    }
    for t in targets {
        if t.v == "site" {
            to.push(Target::Site);
        } else {
            known_department(ctx, registry, &t);
            to.push(Target::Department(t.v));
        }
    }
    let deadlines = o
        .node("deadlines")
        .map(|n| deadlines_table(ctx, n, "route.deadlines"))
        .unwrap_or_default();
    let supervisor = o.string("supervisor").map(|s| {
        known_department(ctx, registry, &s);
        s.v
    });
    Some(Route {
        when,
        to,
        deadlines,
        supervisor,
    })
}

/// `match`: site kinds, sites, rules and levels a route applies to.
fn read_match(ctx: &Ctx, m: &marked_yaml::Node, registry: &Registry) -> Match {
    let mut when = Match::default();
    if let Some(mo) = ctx.obj(m, "route.match", &["kind", "site", "rule", "level"]) {
        for k in mo.strings("kind") {
            if !super::sites::SiteKind::NAMES.contains(&k.v.as_str()) {
                ctx.err(
                    k.pos,
                    format!(
                        "unknown site kind `{}` (expected one of: {})",
                        k.v,
                        super::sites::SiteKind::NAMES.join(", ")
                    ),
                );
            }
            when.kinds.push(k.v);
        }
        for s in mo.strings("site") {
            if registry.site(&s.v).is_none() {
                ctx.err(s.pos, format!("unknown site `{}`", s.v));
            }
            when.sites.push(s.v);
        }
        when.rules = mo.strings("rule").into_iter().map(|s| s.v).collect();
        for l in mo.strings("level") {
            match Level::parse(&l.v) {
                Some(v) => when.levels.push(v),
                None => ctx.err(
                    l.pos,
                    format!("unknown level `{}` (blue, yellow, orange, red)", l.v),
                ),
            }
        }
    }
    when
}

/// A department must be declared in the sites file.
fn known_department(ctx: &Ctx, registry: &Registry, d: &Spanned<String>) {
    if !registry.departments.iter().any(|x| x.id == d.v) {
        let ids: Vec<&str> = registry.departments.iter().map(|x| x.id.as_str()).collect();
        let hint = super::yaml::suggest(&d.v, &ids)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        ctx.err(
            d.pos,
            format!(
                "unknown department `{}` (departments are declared in the sites file){hint}",
                d.v
            ),
        );
    }
}

/// Route rule ids are checked against the loaded rules here (the rules load after the routes).
pub fn check_rules(file: &str, text: &str, routes: &Routes, rule_ids: &[&str]) -> Vec<Diag> {
    let mut out = Vec::new();
    for r in &routes.routes {
        for id in &r.when.rules {
            if !rule_ids.contains(&id.as_str()) {
                let pos = text
                    .find(id.as_str())
                    .map(|o| {
                        let before = &text[..o];
                        Pos {
                            line: before.matches('\n').count() + 1,
                            col: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                        }
                    })
                    .unwrap_or_default();
                let hint = super::yaml::suggest(id, rule_ids)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                out.push(Diag {
                    file: file.into(),
                    pos,
                    msg: format!("unknown rule `{id}`{hint}"),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        super::super::sites::load(
            "sites.yaml",
            "departments:\n  - {id: zjj, name: 住建局}\n  - {id: yjj, name: 应急局}\n  - {id: dcs, name: 督查室}\nsites:\n  - id: rv-01\n    name: 河\n    kind: water\n    department: zjj\n    devices: [{id: g1, metrics: [water_level]}]\n",
        )
        .expect("registry")
    }

    #[test]
    fn matching_routes_add_departments_and_tighten_deadlines() {
        let text = "channels:\n  - {id: h, type: webhook, url: \"http://x/\"}\ndepartments:\n  yjj: {channels: [h]}\nsupervisor: dcs\ndeadlines:\n  red: {ack: 15m, handle: 2h}\nroutes:\n  - match: {kind: water, level: [orange, red]}\n    to: [site, yjj]\n    deadlines: {red: {ack: 10m}}\n";
        let r = load("routes.yaml", text, &registry()).expect("loads");
        let res = r.resolve("water", "rv-01", "x", Level::Red, &["zjj".to_string()]);
        assert_eq!(res.departments, vec!["zjj", "yjj"]);
        assert_eq!(res.deadlines.ack, Some(10 * 60_000));
        assert_eq!(res.deadlines.handle, Some(2 * 3_600_000));
        assert_eq!(res.supervisor.as_deref(), Some("dcs"));
        // a level the route does not match: the site's departments and the defaults
        let res = r.resolve("water", "rv-01", "x", Level::Blue, &["zjj".to_string()]);
        assert_eq!(res.departments, vec!["zjj"]);
        assert_eq!(res.deadlines.ack, None);
        assert_eq!(r.channels_of("yjj"), ["h".to_string()]);
    }

    #[test]
    fn errors_point_at_the_value() {
        let text = "channels:\n  - {id: h, type: webhok, url: \"http://x/\"}\ndepartments:\n  yjjj: {channels: [nope]}\nroutes:\n  - match: {kind: waterr, level: purple}\n";
        let errs = load("routes.yaml", text, &registry()).expect_err("broken");
        let shown: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("routes.yaml:2:")
                    && e.contains("unknown channel type `webhok`")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|e| e.starts_with("routes.yaml:4:3:")
                && e.contains("unknown department `yjjj`")
                && e.contains("did you mean `yjj`")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|e| e.contains("unknown channel `nope`")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e.contains("unknown site kind `waterr`")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|e| e.contains("unknown level `purple`")),
            "{shown:?}"
        );
    }
}
