//! Notifications to a webhook (`access.webhook`): a Slack-style incoming
//! webhook gets `{"text": "..."}` for new requests and decisions.
//!
//! Best effort, never in the way: messages go through a bounded queue to one
//! task, so a slow or failing webhook never delays an answer; each is tried
//! three times, and what cannot be delivered is logged (the well-log has the
//! event either way).

use std::time::Duration;

use tokio::sync::mpsc;

/// Messages waiting at most; beyond, new ones are dropped (and logged).
const QUEUE: usize = 1000;
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct Notifier {
    queue: Option<mpsc::Sender<String>>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn none() -> Notifier {
        Notifier { queue: None }
    }

    /// Starts the delivery task for `url` (https://, or http:// to loopback:
    /// the configuration refuses anything else).
    pub fn start(url: Option<&str>) -> anyhow::Result<Notifier> {
        let Some(url) = url else {
            return Ok(Notifier::none());
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(rempart_tls::public_client_config()?)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (queue, mut messages) = mpsc::channel::<String>(QUEUE);
        let url = url.to_owned();
        tokio::spawn(async move {
            while let Some(text) = messages.recv().await {
                deliver(&http, &url, &text).await;
            }
        });
        Ok(Notifier { queue: Some(queue) })
    }

    /// Queues a message; never waits.
    pub fn send(&self, text: String) {
        if let Some(queue) = &self.queue
            && queue.try_send(text).is_err()
        {
            tracing::warn!("webhook: the queue is full; a notification was dropped");
        }
    }
}

async fn deliver(http: &reqwest::Client, url: &str, text: &str) {
    let body = serde_json::json!({ "text": text });
    for attempt in 1..=ATTEMPTS {
        match http.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "webhook: refused a notification");
            }
            Err(err) => {
                // The URL is the webhook's secret: never in the log.
                let err = err.without_url();
                tracing::warn!(error = %err, attempt, "webhook: cannot deliver a notification");
            }
        }
        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
    }
    tracing::error!("webhook: a notification was not delivered after {ATTEMPTS} attempts");
}
