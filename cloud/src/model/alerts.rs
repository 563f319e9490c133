//! Alerts' domain types: the rules, severities and states, an alert as
//! stored, the condition a rule reports, what raising and clearing did,
//! the notification channels and one claimed notification. The rules are
//! in `crate::alerts`; their storage in `crate::store::alerts`.

use gridlink_protocol::VenId;
use serde::Serialize;

/// What an alert is about: one rule of `crate::alerts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The VEN sent its last will or has been silent too long.
    VenOffline,
    /// An energy counter (`energy_import` / `energy_export`) went backwards.
    EnergyCounterBackwards,
    /// Negative active power on a meter declared import-only.
    NegativeImport,
    /// Active power changed between consecutive readings by more than the bound.
    PowerSpike,
    /// Readings of a series missing for longer than a multiple of its interval.
    DataGap,
    /// A target VEN has not acknowledged a started event.
    DrNoAck,
    /// A target VEN's measured shed of an ended event is at or below the threshold.
    DrNoShed,
    /// A project's generation or consumption total crossed a threshold
    /// (reserved: raised by the projects feature).
    ProjectMilestone,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Self; 8] = [
        Self::VenOffline,
        Self::EnergyCounterBackwards,
        Self::NegativeImport,
        Self::PowerSpike,
        Self::DataGap,
        Self::DrNoAck,
        Self::DrNoShed,
        Self::ProjectMilestone,
    ];

    /// The stored and API name (`ven_offline`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VenOffline => "ven_offline",
            Self::EnergyCounterBackwards => "energy_counter_backwards",
            Self::NegativeImport => "negative_import",
            Self::PowerSpike => "power_spike",
            Self::DataGap => "data_gap",
            Self::DrNoAck => "dr_no_ack",
            Self::DrNoShed => "dr_no_shed",
            Self::ProjectMilestone => "project_milestone",
        }
    }

    /// The rule named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|rule| rule.as_str() == name)
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone should act now.
    Critical,
    /// Worth a look.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The stored and API name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }

    /// The severity named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Critical, Self::Warning, Self::Info]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// Whether an alert is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds (or has not been clear for `resolve_after` yet).
    Open,
    /// The condition was clear for `resolve_after`.
    Resolved,
}

impl AlertState {
    /// The stored and API name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

/// A stored alert, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Its id.
    pub id: i64,
    /// The rule that raised it.
    pub rule: Rule,
    /// How urgent it is.
    pub severity: Severity,
    /// The key the rule is about (VEN id, `ven/meter/quantity/phase`,
    /// `event/ven`, ...).
    pub subject: String,
    /// The VEN concerned, if any.
    pub ven_id: Option<String>,
    /// The DR event concerned, if any.
    pub event_id: Option<String>,
    /// The project concerned, if any.
    pub project_id: Option<i64>,
    /// Open or resolved.
    pub state: AlertState,
    /// When it opened, ms since the Unix epoch.
    pub opened_ms: i64,
    /// When it resolved.
    pub resolved_ms: Option<i64>,
    /// When it was acknowledged.
    pub acknowledged_ms: Option<i64>,
    /// The name of the token that acknowledged it.
    pub acknowledged_by: Option<String>,
    /// A human sentence.
    pub message: String,
    /// Rule-specific JSON.
    pub details: serde_json::Value,
}

/// A condition a rule observed: what an alert is opened with.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The rule.
    pub rule: Rule,
    /// The key the rule is about (at most [`MAX_SUBJECT_LEN`] bytes).
    pub subject: String,
    /// How urgent.
    pub severity: Severity,
    /// The VEN concerned.
    pub ven_id: Option<VenId>,
    /// The DR event concerned.
    pub event_id: Option<String>,
    /// The project concerned.
    pub project_id: Option<i64>,
    /// A human sentence.
    pub message: String,
    /// Rule-specific JSON.
    pub details: serde_json::Value,
}

impl Condition {
    /// A condition with no VEN, event, project or details.
    pub fn new(
        rule: Rule,
        subject: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            subject: subject.into(),
            severity,
            ven_id: None,
            event_id: None,
            project_id: None,
            message: message.into(),
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// Longest subject.
pub const MAX_SUBJECT_LEN: usize = 512;

/// What [`AlertStore::raise_alert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Raised {
    /// The condition is recorded and waits out `open_after` since `since_ms`.
    Pending {
        /// When it was first seen.
        since_ms: i64,
    },
    /// An alert opened now; its notifications are queued.
    Opened(Box<Alert>),
    /// An alert was already open (its resolve hold-down, if running, is reset).
    AlreadyOpen(i64),
}

/// What [`AlertStore::clear_alert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cleared {
    /// No alert was open (a pending condition, if any, is forgotten).
    NotOpen,
    /// The alert stays open until the condition was clear for
    /// `resolve_after` since `since_ms`.
    Clearing {
        /// The alert.
        id: i64,
        /// When the condition was first seen clear.
        since_ms: i64,
    },
    /// The alert resolved now; its notifications are queued.
    Resolved(Box<Alert>),
}

/// Filters of [`AlertStore::alerts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only alerts in this state (`None`: all).
    pub state: Option<AlertState>,
    /// Only alerts of this VEN.
    pub ven_id: Option<VenId>,
    /// Only alerts of this rule.
    pub rule: Option<Rule>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// A delivery channel of notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// HTTP POST with an HMAC signature.
    Webhook,
    /// E-mail over SMTP.
    Email,
    /// AWS SNS Publish.
    Sns,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Self; 3] = [Self::Webhook, Self::Email, Self::Sns];

    /// The stored name (and the `channel` label in `/metrics`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
            Self::Sns => "sns",
        }
    }

    /// The channel named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// One claimed notification for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The outbox row.
    pub id: i64,
    /// The alert.
    pub alert_id: i64,
    /// `opened` or `resolved`.
    pub kind: String,
    /// Where to send it.
    pub channel: Channel,
    /// The notification JSON (`{"event": "opened", "alert": {...}}`).
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The channel accepted it: done.
    Delivered,
    /// It failed; try again at `next_attempt_ms`.
    Retry {
        /// When to try again.
        next_attempt_ms: i64,
        /// Why it failed.
        error: String,
    },
    /// It failed for the last time.
    GiveUp {
        /// Why it failed.
        error: String,
    },
}
