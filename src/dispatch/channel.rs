//! What each channel sends: the signed webhook body, the WeCom and DingTalk robot messages
//! (markdown, zh-CN), and the MQTT topic. Pure functions: no I/O here.

use crate::event::{Level, TransitionKind};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `sha256=<hex HMAC-SHA256(secret, message)>`.
pub fn signature(secret: &str, message: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), message)))
}

/// What a webhook's signature covers: its `X-Yujing-Timestamp` (Unix seconds), a dot, the body.
/// A receiver that checks the timestamp is recent cannot be fed a captured webhook again later.
pub fn signed_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}.").into_bytes();
    m.extend_from_slice(body);
    m
}

/// `X-Yujing-Signature` of a webhook sent at `timestamp` (Unix seconds).
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    signature(secret, &signed_message(timestamp, body))
}

/// How far a webhook's timestamp may be from the receiver's clock by default (5 minutes).
pub const WEBHOOK_TOLERANCE_S: i64 = 300;

/// Check a webhook as a receiver should: the signature over timestamp and body, and the
/// timestamp within `tolerance_s` of `now_s`.
pub fn verify_webhook(
    secret: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), String> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| format!("X-Yujing-Timestamp `{timestamp}` is not Unix seconds"))?;
    if !verify(secret, &signed_message(ts, body), signature) {
        return Err("X-Yujing-Signature does not match timestamp and body".into());
    }
    if (now_s - ts).abs() > tolerance_s {
        return Err(format!(
            "X-Yujing-Timestamp is {} s from now (more than {tolerance_s} s): a replay, or a clock off",
            now_s - ts
        ));
    }
    Ok(())
}

/// Check a signature header against a body (constant time).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hexsig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(sig) = (0..hexsig.len())
        .step_by(2)
        .map(|i| {
            hexsig
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The SHA-256 of a token, as yujing.toml stores it.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(token.as_bytes()))
}

/// DingTalk's signed robot URL: `&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256>` of
/// `"<timestamp>\n<secret>"` keyed by the secret.
pub fn dingtalk_url(url: &str, secret: &str, timestamp_ms: i64) -> Result<String, String> {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    let sign = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()));
    let mut u = reqwest_url(url)?;
    u.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign);
    Ok(u.to_string())
}

fn reqwest_url(url: &str) -> Result<url::Url, String> {
    url::Url::parse(url).map_err(|e| format!("bad url `{url}`: {e}"))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// 蓝色, 黄色, 橙色, 红色 for a level name ("" for none).
pub fn level_zh(level: &str) -> &'static str {
    Level::parse(level).map_or("", Level::zh)
}

/// 发布, 升级, 降级, 解除 for a transition's name (更新 for anything else).
fn transition_zh(t: &str) -> &'static str {
    TransitionKind::parse(t).map_or("更新", TransitionKind::zh)
}

/// The heading and lines of a robot message for a warning document (or a deadline notice).
fn summary(doc: &Value) -> (String, Vec<String>) {
    let level = s(doc, &["level"]);
    let notice = &doc["notice"];
    let head = if notice.is_object() {
        let what = if s(notice, &["overdue"]) == "handle" {
            "处置超时"
        } else {
            "签收超时"
        };
        let to = if s(notice, &["kind"]) == "supervisor" {
            "（抄送督办）"
        } else {
            "（提醒）"
        };
        format!(
            "【{what}{to}】{}{}",
            s(doc, &["site", "name"]),
            s(doc, &["title"])
        )
    } else {
        format!(
            "【{}预警·{}】{}{}",
            level_zh(level),
            transition_zh(s(doc, &["transition"])),
            s(doc, &["site", "name"]),
            s(doc, &["title"])
        )
    };
    let mut lines = vec![
        format!("级别：{}", level_zh(level)),
        format!(
            "站点：{}（{}）",
            s(doc, &["site", "name"]),
            s(doc, &["site", "id"])
        ),
        format!("内容：{}", s(doc, &["message"])),
        format!("时间：{}", s(doc, &["at"])),
        format!("编号：{}", s(doc, &["id"])),
    ];
    if notice.is_object() {
        lines.push(format!("期限：{}", s(notice, &["due"])));
    }
    (head, lines)
}

/// WeCom (企业微信) group robot: `{"msgtype": "markdown", "markdown": {"content": ...}}`.
pub fn wecom_body(doc: &Value) -> Vec<u8> {
    let (head, lines) = summary(doc);
    let color = match s(doc, &["level"]) {
        "red" | "orange" => "warning",
        _ => "info",
    };
    let mut content = format!("**<font color=\"{color}\">{head}</font>**\n");
    for l in lines {
        content.push_str("> ");
        content.push_str(&l);
        content.push('\n');
    }
    serde_json::to_vec(
        &serde_json::json!({"msgtype": "markdown", "markdown": {"content": content}}),
    )
    .unwrap_or_default()
}

/// DingTalk (钉钉) group robot: `{"msgtype": "markdown", "markdown": {"title", "text"}}`.
pub fn dingtalk_body(doc: &Value) -> Vec<u8> {
    let (head, lines) = summary(doc);
    let mut text = format!("#### {head}\n");
    for l in lines {
        text.push_str("- ");
        text.push_str(&l);
        text.push('\n');
    }
    serde_json::to_vec(
        &serde_json::json!({"msgtype": "markdown", "markdown": {"title": head, "text": text}}),
    )
    .unwrap_or_default()
}

/// Robots answer HTTP 200 with `{"errcode": 0}` on success and a non-zero code otherwise.
pub fn robot_error(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    match v["errcode"].as_i64() {
        Some(0) | None => None,
        Some(code) => Some(format!(
            "errcode {code}: {}",
            v["errmsg"].as_str().unwrap_or("")
        )),
    }
}

/// `text` with every occurrence of the `secrets` (four characters or longer) replaced by `***`
/// and the query string of every URL in it cut off: error texts from receivers and from the
/// HTTP client are stored, shown and logged.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "***");
        // as it appears percent-encoded in a URL
        let enc: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        if enc != *s {
            out = out.replace(&enc, "***");
        }
    }
    let mut cut = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("://") {
        // through the URL's path; its query string (to the next space or quote) goes
        let (head, tail) = rest.split_at(at + 3);
        cut.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(tail.len());
        let url = &tail[..end];
        match url.find('?') {
            Some(q) => {
                cut.push_str(&url[..q]);
                cut.push_str("?…");
            }
            None => cut.push_str(url),
        }
        rest = &tail[end..];
    }
    cut.push_str(rest);
    cut
}

/// The MQTT topic of a department's warnings.
pub fn mqtt_topic(department: &str) -> String {
    format!("yujing/warnings/{department}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_no_keys() {
        let secrets = vec![
            "5b2c7e1f-robot-key".to_string(),
            "SECabc+def/123".to_string(),
            "x".to_string(),
        ];
        let e = "cannot connect (qyapi.weixin.qq.com): https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=5b2c7e1f-robot-key refused; sign SECabc%2Bdef%2F123 and SECabc+def/123";
        let r = redact(e, &secrets);
        assert!(!r.contains("5b2c7e1f"), "{r}");
        assert!(!r.contains("SECabc"), "{r}");
        assert!(
            r.contains("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?…"),
            "{r}"
        );
        assert!(r.contains("cannot connect (qyapi.weixin.qq.com)"), "{r}");
        // a URL's query goes even when its values are not known secrets
        assert_eq!(
            redact("see http://h/x?access_token=abc&sign=d\"", &[]),
            "see http://h/x?…\""
        );
        assert_eq!(redact("no url here", &secrets), "no url here");
    }

    #[test]
    fn signature_is_the_standard_hmac() {
        // RFC 4231 test case 2
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify("Jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify("Jefe", b"what do ya want for nothing!", &sig));
        assert!(!verify("Jefe", b"x", "sha256=zz"));
    }

    #[test]
    fn webhook_signatures_cover_the_timestamp() {
        let body = br#"{"id":"w1"}"#;
        let sig = webhook_signature("k", 1_700_000_000, body);
        assert_eq!(
            sig,
            signature("k", b"1700000000.{\"id\":\"w1\"}"),
            "HMAC over `<timestamp>.<body>`"
        );
        let now = 1_700_000_010;
        assert!(verify_webhook("k", body, "1700000000", &sig, now, 300).is_ok());
        // the same signature with another timestamp, or a replay an hour later, fails
        assert!(verify_webhook("k", body, "1700000001", &sig, now, 300).is_err());
        let late = verify_webhook("k", body, "1700000000", &sig, now + 3_600, 300);
        assert!(late.is_err_and(|e| e.contains("replay")));
        assert!(verify_webhook("k", body, "soon", &sig, now, 300).is_err());
        assert!(verify_webhook("x", body, "1700000000", &sig, now, 300).is_err());
    }

    #[test]
    fn dingtalk_signs_timestamp_and_secret() {
        let u = dingtalk_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            "SEC1",
            1_700_000_000_000,
        )
        .expect("url");
        assert!(u.starts_with(
            "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000&sign="
        ));
        // the sign is base64 of 32 bytes, URL-encoded (`+`, `/`, `=` escaped)
        let sign = u.rsplit("sign=").next().unwrap_or("");
        assert!(
            !sign.contains('+') && !sign.contains('/') && sign.ends_with("%3D"),
            "{sign}"
        );
    }

    #[test]
    fn robot_messages_say_level_site_and_message() {
        let doc = serde_json::json!({"id": "w-1", "level": "red", "transition": "raise", "title": "扬尘超标",
            "site": {"id": "cs-02", "name": "宁溪大道改造工程"}, "message": "PM10 1小时均值 420", "at": "2026-11-28T09:00:00+08:00"});
        let w: Value = serde_json::from_slice(&wecom_body(&doc)).expect("json");
        let c = w["markdown"]["content"].as_str().unwrap_or("");
        assert!(
            c.contains("【红色预警·发布】宁溪大道改造工程扬尘超标") && c.contains("编号：w-1"),
            "{c}"
        );
        let d: Value = serde_json::from_slice(&dingtalk_body(&doc)).expect("json");
        assert_eq!(d["msgtype"], "markdown");
        assert!(d["markdown"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("PM10 1小时均值 420"));
        assert_eq!(robot_error(r#"{"errcode":0,"errmsg":"ok"}"#), None);
        assert!(robot_error(r#"{"errcode":310000,"errmsg":"sign not match"}"#).is_some());
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
