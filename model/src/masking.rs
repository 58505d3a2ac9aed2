//! Masking rules and policies.

use serde::{Deserialize, Serialize};

/// What a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// Payment card numbers (Luhn).
    PaymentCard,
    /// IBANs (mod 97).
    Iban,
    /// US social security numbers.
    UsSsn,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// Values of `details` keys named like secrets.
    SecretKey,
}

impl Detector {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::PaymentCard => "payment_card",
            Detector::Iban => "iban",
            Detector::UsSsn => "us_ssn",
            Detector::IpAddress => "ip_address",
            Detector::SecretKey => "secret_key",
        }
    }
}

/// What a rule does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MaskAction {
    /// Replace with `[detector]`.
    Redact,
    /// Keep the last `keep_last` characters (e-mail: the domain).
    Partial {
        /// Characters kept at the end.
        keep_last: u8,
    },
    /// Replace with a keyed pseudonym `pseu:<24 hex>`.
    Pseudonymize,
}

/// One masking rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Detector.
    pub detector: Detector,
    /// Action.
    pub action: MaskAction,
    /// Keep the original value in the encrypted payload, for unmasking.
    #[serde(default)]
    pub keep_original: bool,
    /// Applied.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A masking policy: one version of the rule list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaskingPolicy {
    /// Version (0: the built-in defaults, never changed by anyone).
    pub version: u64,
    /// The rules.
    pub rules: Vec<MaskRule>,
    /// When it was saved (RFC 3339); None for the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Who saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}
