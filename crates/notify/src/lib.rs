//! The `notify` role: delivers the outbox (`store::outbox`) — e-mail over SMTP (`lettre`) and
//! SMS through an HTTP gateway: a generic JSON webhook (`{"to", "text"}`) or Twilio's Messages
//! API (form-encoded `To`, `From`, `Body` with HTTP Basic account SID and auth token).
//!
//! Metrics (Prometheus, `/metrics`): `outbox_delivered_total`, `outbox_failed_total` (retries
//! scheduled), `outbox_dead_total` and `outbox_sink_total` by channel, and the gauge
//! `outbox_waiting` (pending or in flight).
//!
//! A worker claims due rows one at a time with a compare-and-swap (`pending` → `sending`
//! with a lease in `next_attempt_at`), sends, and marks them `sent` (the body is erased: it
//! may hold a sign-in code or link) or schedules a retry with exponential back-off (30 s,
//! 1 min, 2 min, … capped at 1 h); after [`MAX_ATTEMPTS`] the row is `dead`. A crash between
//! sending and marking leaves the row `sending`; when its lease ends it is sent again, so
//! delivery is at least once (a duplicate is possible only in that window).
//!
//! Without a transport for a channel the row goes to the development sink (`sink`): kept with
//! its body for `carebridge outbox list`, and logged with digits masked.

use carebridge_domain::Timestamp;
use carebridge_store::{Db, StoreError, exec, run, sqlx};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

/// Attempts before a message is given up (`dead`).
pub const MAX_ATTEMPTS: i64 = 8;
/// How long a claimed row is left to its worker before another may retry it.
const LEASE_MS: i64 = 120_000;

/// Where messages go.
#[derive(Clone, Debug, Default)]
pub struct Transports {
    /// `smtps://user:pass@host:465`, `smtp://user:pass@host:587?tls=required`, or
    /// `smtp://host:port` (unencrypted, for a local relay).
    pub smtp_url: Option<String>,
    /// The sender of e-mails, e.g. `Carebridge <no-reply@example.org>`.
    pub mail_from: String,
    /// The SMS gateway: POST `{"to": "+41…", "text": "…"}` as JSON.
    pub sms_webhook_url: Option<String>,
    /// Or Twilio (takes precedence over the webhook).
    pub twilio: Option<Twilio>,
}

/// Twilio's Messages API.
#[derive(Clone, Default)]
pub struct Twilio {
    pub account_sid: String,
    pub auth_token: String,
    /// The sender: a Twilio number in E.164 or an alphanumeric sender id.
    pub from: String,
    /// `https://api.twilio.com` unless testing.
    pub api_base: String,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// How SMS leave.
enum SmsGateway {
    Webhook(String),
    Twilio(Twilio),
}

/// The ready transports.
pub struct Notifier {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
    sms: Option<SmsGateway>,
    http: reqwest::Client,
}

/// Why the transports could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("smtp_url: {0}")]
    Smtp(String),
    #[error("mail_from: {0}")]
    From(String),
}

impl Notifier {
    pub fn new(t: &Transports) -> Result<Notifier, SetupError> {
        let smtp = match &t.smtp_url {
            Some(u) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(u)
                    .map_err(|e| SetupError::Smtp(e.to_string()))?
                    .timeout(Some(std::time::Duration::from_secs(20)))
                    .build(),
            ),
            None => None,
        };
        let from = match &t.smtp_url {
            Some(_) => Some(
                t.mail_from
                    .parse::<Mailbox>()
                    .map_err(|e| SetupError::From(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Notifier {
            smtp,
            from,
            sms: match (&t.twilio, &t.sms_webhook_url) {
                (Some(tw), _) => Some(SmsGateway::Twilio(tw.clone())),
                (None, Some(u)) => Some(SmsGateway::Webhook(u.clone())),
                (None, None) => None,
            },
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .map_err(|e| SetupError::Smtp(e.to_string()))?,
        })
    }

    async fn send(
        &self,
        channel: &str,
        to: &str,
        subject: Option<&str>,
        body: &str,
    ) -> Result<bool, String> {
        match channel {
            "email" => {
                let (Some(smtp), Some(from)) = (&self.smtp, &self.from) else {
                    return Ok(false);
                };
                let to: Mailbox = to.parse().map_err(|e| format!("recipient: {e}"))?;
                let m = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject.unwrap_or("Carebridge"))
                    .header(ContentType::TEXT_PLAIN)
                    .body(body.to_string())
                    .map_err(|e| e.to_string())?;
                smtp.send(m).await.map_err(|e| e.to_string())?;
                Ok(true)
            }
            "sms" => {
                let req = match &self.sms {
                    None => return Ok(false),
                    Some(SmsGateway::Webhook(url)) => self
                        .http
                        .post(url)
                        .json(&serde_json::json!({"to": to, "text": body})),
                    Some(SmsGateway::Twilio(t)) => self
                        .http
                        .post(format!(
                            "{}/2010-04-01/Accounts/{}/Messages.json",
                            t.api_base.trim_end_matches('/'),
                            t.account_sid
                        ))
                        .basic_auth(&t.account_sid, Some(&t.auth_token))
                        .form(&[("To", to), ("From", t.from.as_str()), ("Body", body)]),
                };
                let r = req.send().await.map_err(|e| e.without_url().to_string())?;
                if !r.status().is_success() {
                    return Err(format!("gateway answered {}", r.status()));
                }
                Ok(true)
            }
            other => Err(format!("unknown channel {other}")),
        }
    }
}

/// What the development sink may log of a message: digits become `•` (codes) and the value
/// of every `token=` (one-time links) is cut.
pub fn mask(s: &str) -> String {
    let digits: String = s
        .chars()
        .map(|c| if c.is_ascii_digit() { '•' } else { c })
        .collect();
    let mut out = String::with_capacity(digits.len());
    let mut rest = digits.as_str();
    while let Some(i) = rest.find("token=") {
        out.push_str(&rest[..i + 6]);
        out.push('…');
        let after = &rest[i + 6..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == '&')
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Back-off before attempt `n + 1` after `n` failures.
pub fn backoff_ms(attempts: i64) -> i64 {
    (30_000_i64 << attempts.clamp(0, 7)).min(3_600_000)
}

type Row = (i64, String, String, Option<String>, String, String, i64);

/// Delivers what is due; returns how many rows were handled.
pub async fn run_once(db: &Db, n: &Notifier, now: Timestamp) -> Result<usize, StoreError> {
    let ms = now.as_millisecond();
    let due: Vec<Row> = {
        let mut c = db.read().await?;
        run!(&mut c, c => sqlx::query_as(
            "SELECT seq, channel, recipient, subject, body, purpose, attempts FROM outbox \
             WHERE (state = 'pending' OR state = 'sending') AND (next_attempt_at IS NULL OR next_attempt_at <= $1) ORDER BY seq LIMIT 50")
            .bind(ms).fetch_all(c).await)?
    };
    let mut handled = 0;
    {
        let mut c = db.read().await?;
        let waiting: i64 = run!(&mut c, c => sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'pending') + (SELECT COUNT(*) FROM outbox WHERE state = 'sending')")
            .fetch_one(c).await)?;
        metrics::gauge!("outbox_waiting").set(waiting as f64);
    }
    for (seq, channel, to, subject, body, purpose, attempts) in due {
        let mut w = db.write().await?;
        let claimed = exec!(&mut w, c => sqlx::query(
            "UPDATE outbox SET state = 'sending', next_attempt_at = $3 WHERE seq = $1 AND attempts = $2 AND (state = 'pending' OR state = 'sending') AND (next_attempt_at IS NULL OR next_attempt_at <= $4)")
            .bind(seq).bind(attempts).bind(ms + LEASE_MS).bind(ms).execute(c).await)?;
        drop(w);
        if claimed != 1 {
            continue;
        }
        handled += 1;
        let r = n.send(&channel, &to, subject.as_deref(), &body).await;
        let mut w = db.write().await?;
        match r {
            Ok(true) => {
                exec!(&mut w, c => sqlx::query("UPDATE outbox SET state = 'sent', sent_at = $2, body = '', attempts = attempts + 1, last_error = NULL WHERE seq = $1")
                    .bind(seq).bind(ms).execute(c).await)?;
                metrics::counter!("outbox_delivered_total", "channel" => channel.clone())
                    .increment(1);
                tracing::info!(seq, channel = %channel, purpose = %purpose, "message delivered");
            }
            Ok(false) => {
                exec!(&mut w, c => sqlx::query("UPDATE outbox SET state = 'sink', next_attempt_at = NULL WHERE seq = $1").bind(seq).execute(c).await)?;
                metrics::counter!("outbox_sink_total", "channel" => channel.clone()).increment(1);
                tracing::info!(seq, channel = %channel, purpose = %purpose, to = %mask(&to), text = %mask(&body),
                    "no transport configured: message kept in the development sink (carebridge outbox list)");
            }
            Err(e) => {
                let tries = attempts + 1;
                let (state, next) = if tries >= MAX_ATTEMPTS {
                    ("dead", None)
                } else {
                    ("pending", Some(ms + backoff_ms(attempts)))
                };
                exec!(&mut w, c => sqlx::query("UPDATE outbox SET state = $2, attempts = $3, next_attempt_at = $4, last_error = $5 WHERE seq = $1")
                    .bind(seq).bind(state).bind(tries).bind(next).bind(&e).execute(c).await)?;
                if state == "dead" {
                    metrics::counter!("outbox_dead_total", "channel" => channel.clone())
                        .increment(1);
                } else {
                    metrics::counter!("outbox_failed_total", "channel" => channel.clone())
                        .increment(1);
                }
                tracing::warn!(seq, channel = %channel, purpose = %purpose, attempts = tries, error = %e, "delivery failed");
            }
        }
    }
    Ok(handled)
}

/// One outbox row as `carebridge outbox list` shows it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub seq: i64,
    pub id: Uuid,
    pub channel: String,
    pub recipient: String,
    pub purpose: String,
    pub state: String,
    pub attempts: i64,
    pub body: String,
    pub last_error: Option<String>,
}

/// The newest `limit` rows.
pub async fn list(db: &Db, limit: i64) -> Result<Vec<Listed>, StoreError> {
    let mut c = db.read().await?;
    let rows: Vec<(
        i64,
        Uuid,
        String,
        String,
        String,
        String,
        i64,
        String,
        Option<String>,
    )> = run!(&mut c, c => sqlx::query_as(
        "SELECT seq, id, channel, recipient, purpose, state, attempts, body, last_error FROM outbox ORDER BY seq DESC LIMIT $1")
        .bind(limit).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, id, channel, recipient, purpose, state, attempts, body, last_error)| Listed {
                seq,
                id,
                channel,
                recipient,
                purpose,
                state,
                attempts,
                body,
                last_error,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour_and_masks_hide_digits() {
        assert_eq!(backoff_ms(0), 30_000);
        assert_eq!(backoff_ms(1), 60_000);
        assert_eq!(backoff_ms(6), 1_920_000);
        assert_eq!(backoff_ms(7), 3_600_000);
        assert_eq!(backoff_ms(50), 3_600_000);
        assert_eq!(mask("Your code is 123456"), "Your code is ••••••");
        assert_eq!(
            mask("Set it here: https://x.example/account/password?token=abcDEF_-9&lang=de\n"),
            "Set it here: https://x.example/account/password?token=…&lang=de\n"
        );
    }
}
