//! SNS, read-only: the readiness check lists the subscriptions of this stack's events topic.

use aws_sdk_sns::Client;

use crate::fault::AwsFault;
use crate::preflight::Subscription;
use crate::retry::{self, Budget};

const LIST: &str = "SNS.ListSubscriptionsByTopic";

/// A topic holds at most a few subscriptions here; the bound only guards against a token that
/// never ends.
const MAX_PAGES: usize = 50;

#[derive(Debug, Clone)]
pub struct Sns {
    client: Client,
}

impl Sns {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every subscription of `topic`, every page.
    pub async fn subscriptions(&self, topic: &str, budget: &Budget) -> Result<Vec<Subscription>, AwsFault> {
        retry::all_pages(LIST, budget, MAX_PAGES, |token| async move {
            let out = self
                .client
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(LIST, &e))?;
            let subs = out
                .subscriptions()
                .iter()
                .map(|s| Subscription {
                    protocol: s.protocol().unwrap_or_default().to_owned(),
                    endpoint: s.endpoint().unwrap_or_default().to_owned(),
                    subscription_arn: s.subscription_arn().unwrap_or_default().to_owned(),
                })
                .collect();
            Ok((subs, out.next_token().map(str::to_owned)))
        })
        .await
    }
}
