//! AWS SNS delivery: `Publish` of the notification JSON to a topic, with
//! the alert's one-line summary as the subject (what e-mail subscribers
//! see). Credentials come from the usual AWS chain (environment, profile,
//! instance or task role); the region from the topic ARN.

use aws_sdk_sns::Client;

use super::DeliveryError;
use crate::alerts::SnsSettings;

/// Publishes notifications to one SNS topic.
#[derive(Debug, Clone)]
pub struct SnsSender {
    client: Client,
    topic_arn: String,
}

/// The region in a topic ARN (`arn:aws:sns:<region>:<account>:<name>`).
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// The HTTP client of the AWS SDK: [`crate::aws::http_client`].
pub fn http_client() -> aws_sdk_sns::config::SharedHttpClient {
    crate::aws::http_client()
}

impl SnsSender {
    /// A sender from the usual AWS configuration, against
    /// `settings.endpoint_url` if set.
    pub async fn connect(settings: &SnsSettings) -> Self {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client());
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = arn_region(&settings.topic_arn) {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        Self {
            client: Client::new(&loader.load().await),
            topic_arn: settings.topic_arn.clone(),
        }
    }

    /// A sender over a client made elsewhere (tests give explicit
    /// credentials and an endpoint).
    pub fn from_client(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// Publishes `payload` with `subject` (cut to SNS's 100 characters).
    pub async fn send(&self, subject: &str, payload: &str) -> Result<(), DeliveryError> {
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(payload)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::Sns(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_arn() {
        assert_eq!(
            arn_region("arn:aws:sns:eu-west-1:123456789012:alerts"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("alerts"), None);
    }
}
