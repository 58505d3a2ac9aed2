//! The frameworks and their logging controls, each mapped to the checks
//! that give it evidence. A control's status is its worst check's.

/// (framework id, name, [(control id, title, [check ids])]).
type Mapping = (&'static str, &'static str, &'static [(&'static str, &'static str, &'static [&'static str])]);

/// The frameworks' logging-related controls and the checks that evidence them.
pub const FRAMEWORKS: &[Mapping] = &[
    (
        "soc2",
        "SOC 2",
        &[
            (
                "CC7.2",
                "Monitor system components for anomalies",
                &["auth_events_recorded", "admin_actions_recorded", "log_access_recorded", "alerting"],
            ),
            ("CC7.3", "Evaluate security events", &["alerting", "siem_forwarding", "chain_verified"]),
            ("CC8.1", "Authorize and approve changes", &["policy_changes_reviewed", "admin_actions_recorded"]),
        ],
    ),
    (
        "iso27001",
        "ISO/IEC 27001:2022",
        &[
            (
                "A.8.15",
                "Logging",
                &[
                    "auth_events_recorded",
                    "admin_actions_recorded",
                    "append_only",
                    "chain_verified",
                    "checkpoints_signed",
                    "masking_active",
                ],
            ),
            ("A.8.16", "Monitoring activities", &["alerting", "siem_forwarding", "log_access_recorded"]),
            ("A.5.28", "Collection of evidence", &["chain_verified", "checkpoints_signed", "append_only"]),
            ("A.8.32", "Change management", &["policy_changes_reviewed"]),
        ],
    ),
    (
        "iso27017",
        "ISO/IEC 27017",
        &[
            ("12.4.1", "Event logging (cloud services)", &["auth_events_recorded", "admin_actions_recorded"]),
            ("CLD.12.4.5", "Monitoring of cloud services", &["log_access_recorded", "siem_forwarding"]),
        ],
    ),
    (
        "iso27018",
        "ISO/IEC 27018",
        &[("A.12.4.1", "Logging of access to PII", &["log_access_recorded", "masking_active", "chain_verified"])],
    ),
    (
        "iso27701",
        "ISO/IEC 27701",
        &[("6.9.4.1", "Event logging (PII processing)", &["masking_active", "log_access_recorded", "retention"])],
    ),
    (
        "nist80053",
        "NIST SP 800-53",
        &[
            ("AU-2", "Event logging", &["auth_events_recorded", "admin_actions_recorded"]),
            ("AU-3", "Content of audit records", &["record_content"]),
            ("AU-4", "Audit log storage capacity", &["retention"]),
            ("AU-5", "Response to audit logging process failures", &["alerting", "checkpoints_signed"]),
            ("AU-6", "Audit record review, analysis and reporting", &["log_access_recorded", "alerting"]),
            ("AU-7", "Audit record reduction and report generation", &["exports_signed", "reports_scheduled"]),
            ("AU-8", "Time stamps", &["clock"]),
            ("CM-3", "Configuration change control", &["policy_changes_reviewed"]),
            ("AU-9", "Protection of audit information", &["append_only", "encryption_keys", "chain_verified"]),
            ("AU-10", "Non-repudiation", &["checkpoints_signed", "chain_verified"]),
            ("AU-11", "Audit record retention", &["retention", "backups"]),
            (
                "AU-12",
                "Audit record generation",
                &["auth_events_recorded", "admin_actions_recorded", "log_access_recorded"],
            ),
        ],
    ),
    (
        "pcidss4",
        "PCI DSS 4.0 (requirement 10)",
        &[
            (
                "10.2",
                "Audit logs capture user activity and events",
                &["auth_events_recorded", "admin_actions_recorded", "log_access_recorded"],
            ),
            (
                "10.3",
                "Audit logs are protected from destruction and changes",
                &["append_only", "encryption_keys", "chain_verified", "backups"],
            ),
            ("10.4", "Audit logs are reviewed", &["log_access_recorded", "alerting"]),
            ("10.5", "Audit log history is retained (12 months)", &["retention"]),
            ("10.6", "Time-synchronisation", &["clock"]),
            ("10.7", "Failures of critical security controls are detected", &["alerting", "chain_verified"]),
        ],
    ),
    (
        "hipaa",
        "HIPAA Security Rule",
        &[(
            "164.312(b)",
            "Audit controls",
            &["auth_events_recorded", "log_access_recorded", "chain_verified", "append_only"],
        )],
    ),
    (
        "gdpr",
        "GDPR",
        &[
            ("Art. 30", "Records of processing activities", &["log_access_recorded", "record_content"]),
            ("Art. 32", "Security of processing", &["encryption_keys", "masking_active", "chain_verified", "backups"]),
        ],
    ),
    (
        "sox",
        "SOX IT general controls",
        &[
            ("ITGC-CM", "Change management", &["admin_actions_recorded"]),
            ("ITGC-AC", "Access to programs and data", &["auth_events_recorded", "log_access_recorded"]),
            ("ITGC-OPS", "Computer operations", &["chain_verified", "backups"]),
        ],
    ),
    (
        "nistcsf2",
        "NIST CSF 2.0",
        &[
            (
                "DE.CM-01",
                "Networks and network services are monitored",
                &["auth_events_recorded", "alerting", "siem_forwarding"],
            ),
            (
                "DE.CM-03",
                "Personnel activity and technology usage are monitored",
                &["auth_events_recorded", "admin_actions_recorded", "log_access_recorded"],
            ),
            ("DE.CM-09", "Computing hardware, software and data are monitored", &["chain_verified", "alerting"]),
            (
                "PR.PS-04",
                "Log records are generated and made available for continuous monitoring",
                &["record_content", "siem_forwarding", "append_only", "checkpoints_signed"],
            ),
            ("PR.DS-01", "Data at rest is protected", &["encryption_keys", "backups"]),
        ],
    ),
    (
        "asvs",
        "OWASP ASVS 4.0 (V7 logging)",
        &[
            ("V7.1", "Log content requirements", &["record_content", "masking_active"]),
            ("V7.2", "Log processing requirements", &["auth_events_recorded", "admin_actions_recorded"]),
            ("V7.3", "Log protection requirements", &["append_only", "chain_verified", "encryption_keys"]),
            ("V7.3.4", "Time sources are synchronised", &["clock"]),
        ],
    ),
    (
        "ccpa",
        "CCPA / CPRA",
        &[
            (
                "1798.100",
                "Consumers' requests and their handling are recorded",
                &["log_access_recorded", "record_content"],
            ),
            ("1798.105", "Deletion of personal information", &["retention"]),
            (
                "1798.150",
                "Reasonable security of personal information",
                &["masking_active", "encryption_keys", "chain_verified"],
            ),
        ],
    ),
    (
        "nist800207",
        "NIST SP 800-207 (zero trust)",
        &[
            ("Tenet 5", "Integrity and security posture of assets monitored", &["chain_verified", "alerting"]),
            (
                "Tenet 6",
                "Authentication and authorization dynamic and strictly enforced",
                &["auth_events_recorded", "policy_changes_reviewed"],
            ),
            (
                "Tenet 7",
                "Information collected on the state of assets and communications",
                &["record_content", "siem_forwarding", "log_access_recorded"],
            ),
        ],
    ),
];
