//! Identity and access on real databases, with a controlled clock.

use custos_engine::events::model::Channel;
use std::sync::Arc;

use custos_engine::clock::{Clock as _, ManualClock, OsRandom};
use custos_engine::identity::apikey::Scope;
use custos_engine::identity::permission::{Permission, PermissionSet};
use custos_engine::identity::service::{
    Acting, Identity, IdentityError, IdentitySettings, LoginAttempt, LoginOutcome, LoginRejection, NewUser,
};
use custos_engine::identity::totp;
use custos_engine::ledger::{Ledger, LedgerTasks};
use secrecy::{ExposeSecret as _, SecretString};

use crate::support::{Backend, KEK, TestDb, both_backends, config};

const T0: i64 = 1_800_000_000_000_000;

struct Env {
    db: TestDb,
    clock: Arc<ManualClock>,
    ledger: Ledger,
    tasks: Option<LedgerTasks>,
    id: Identity,
}

impl Env {
    async fn new(backend: Backend, settings: IdentitySettings) -> Option<Env> {
        let t = TestDb::new(backend).await?;
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) =
            Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(
            custos_engine::events::Events::open(ledger.clone(), custos_engine::events::validate::Limits::default())
                .await
                .unwrap(),
        );
        let id = Identity::new(events, clock.clone(), Arc::new(OsRandom), settings).await.unwrap();
        Some(Env { db: t, clock, ledger, tasks: Some(tasks), id })
    }

    async fn done(mut self) {
        self.ledger.shutdown(self.tasks.take().unwrap()).await.unwrap();
    }

    /// Every recorded event: (action, outcome, decrypted payload).
    async fn events(&self) -> Vec<(String, String, String)> {
        let head = self.ledger.head().await.unwrap().seq;
        let mut out = Vec::new();
        for seq in 1..=head {
            let e = self.ledger.entry(seq).await.unwrap().unwrap();
            let p = self.ledger.open_payload(&e).await.unwrap();
            out.push((
                e.header.fields.action.clone(),
                e.header.fields.outcome.clone(),
                String::from_utf8(p.to_vec()).unwrap(),
            ));
        }
        out
    }
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn client(ip: &str) -> Acting {
    let mut a = Acting::anonymous(Channel::Ui).from_client(Some(ip.into()), None, None);
    a.actor.kind = "user".into();
    a
}

async fn login(id: &Identity, user: &str, pw: &str, ip: &str) -> LoginOutcome {
    id.login(LoginAttempt { username: user, password: &secret(pw), actor: client(ip) }).await.unwrap()
}

fn user(name: &str, pw: &str, roles: &[&str]) -> NewUser {
    NewUser {
        username: name.into(),
        email: Some(format!("{name}@example.org")),
        display_name: None,
        password: secret(pw),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        must_change_password: false,
    }
}

both_backends! {
    async fn users_sign_in_with_the_permissions_of_their_roles(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let admin = Acting::system(Channel::Cli);
        let roles = env.id.list_roles().await.unwrap();
        let names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["admin", "compliance_officer", "notification_manager", "records_manager", "security_analyst", "siem_manager", "viewer"]);

        let first = env.id.ensure_first_admin(None, None).await.unwrap().unwrap();
        assert_eq!(first.0, "admin");
        let generated = first.1.expect("a random password is generated and shown once");
        assert!(env.id.ensure_first_admin(None, None).await.unwrap().is_none(), "only on a new installation");
        match login(&env.id, "admin", generated.expose_secret(), "10.0.0.1").await {
            LoginOutcome::Success(p) => assert!(p.must_change_password && p.allows(Permission::UserManage)),
            other => panic!("{other:?}"),
        }

        env.id.create_user(&admin, user("olivia", "officer password 1", &["compliance_officer"])).await.unwrap();
        let err = env.id.create_user(&admin, user("Olivia", "officer password 1", &[])).await.unwrap_err();
        assert!(matches!(err, IdentityError::Conflict(_)), "{err}");
        for (u, pw, field) in [("x", "long enough pass", "username"), ("bob", "short", "password"), ("bob", "bob@example.org", "password")] {
            let err = env.id.create_user(&admin, user(u, pw, &[])).await.unwrap_err();
            assert!(matches!(err, IdentityError::Invalid { field: f, .. } if f == field), "{u}/{pw}: {err}");
        }
        let err = env.id.create_user(&admin, user("bob", "long enough pass", &["superuser"])).await.unwrap_err();
        assert!(err.to_string().contains("no role named `superuser`"), "{err}");

        let LoginOutcome::Success(p) = login(&env.id, "OLIVIA ", "officer password 1", "10.0.0.2").await else { panic!() };
        assert_eq!(p.roles, ["compliance_officer"]);
        assert!(p.allows(Permission::AuditExport) && !p.allows(Permission::AuditUnmask) && !p.allows(Permission::UserManage));

        let events = env.events().await;
        let actions: Vec<_> = events.iter().map(|(a, o, _)| format!("{a}:{o}")).collect();
        assert!(actions.contains(&"user.create:success".to_string()), "{actions:?}");
        assert!(actions.iter().filter(|a| *a == "user.login:success").count() == 2, "{actions:?}");
        for (_, _, payload) in &events {
            assert!(!payload.contains("officer password 1") && !payload.contains(generated.expose_secret()), "{payload}");
        }
        env.done().await;
    }
}

both_backends! {
    async fn repeated_failures_lock_the_account_without_revealing_whether_it_exists(backend: Backend) {
        let settings = IdentitySettings { lockout_threshold: 3, lockout_secs: 600, name_failures: 3, ..IdentitySettings::default() };
        let Some(env) = Env::new(backend, settings).await else { return };
        env.id.create_user(&Acting::system(Channel::Cli), user("ada", "correct horse battery", &["viewer"])).await.unwrap();

        let id = &env.id;
        let wrong = |n: &'static str| login(id, n, "wrong password!!", "10.1.1.1");
        assert!(matches!(wrong("ada").await, LoginOutcome::Rejected(LoginRejection::InvalidCredentials)));
        assert!(matches!(wrong("nobody").await, LoginOutcome::Rejected(LoginRejection::InvalidCredentials)), "same answer");
        assert!(matches!(wrong("ada").await, LoginOutcome::Rejected(LoginRejection::InvalidCredentials)));
        assert!(matches!(wrong("ada").await, LoginOutcome::Rejected(LoginRejection::LockedOut)));
        // Locked: even the right password is refused, with the same message.
        assert!(matches!(login(&env.id, "ada", "correct horse battery", "10.1.1.2").await, LoginOutcome::Rejected(LoginRejection::LockedOut)));
        // An unknown name throttles to the same answer.
        for _ in 0..2 {
            let _ = wrong("nobody").await;
        }
        assert!(matches!(wrong("nobody").await, LoginOutcome::Rejected(LoginRejection::LockedOut)));

        let users = env.id.list_users().await.unwrap();
        assert!(users[0].locked_until_us.is_some());
        env.clock.advance_us(601_000_000);
        assert!(matches!(login(&env.id, "ada", "correct horse battery", "10.1.1.2").await, LoginOutcome::Success(_)), "the lockout expires");

        let events = env.events().await;
        assert_eq!(events.iter().filter(|(a, _, _)| a == "user.lockout").count(), 1, "one lockout event");
        let failures: Vec<_> = events.iter().filter(|(a, o, _)| a == "user.login" && o == "failure").collect();
        assert!(failures.iter().any(|(_, _, p)| p.contains("wrong password")));
        assert!(failures.iter().any(|(_, _, p)| p.contains("unknown user")));
        assert!(failures.iter().all(|(_, _, p)| !p.contains("correct horse battery") && !p.contains("wrong password!!")));
        env.done().await;
    }
}

both_backends! {
    async fn too_many_failures_from_one_address_are_throttled(backend: Backend) {
        let settings = IdentitySettings { ip_failures: 4, ..IdentitySettings::default() };
        let Some(env) = Env::new(backend, settings).await else { return };
        for i in 0..4 {
            let _ = login(&env.id, &format!("user{i}"), "wrong password!!", "192.0.2.9").await;
        }
        match login(&env.id, "someone", "anything at all", "192.0.2.9").await {
            LoginOutcome::Rejected(LoginRejection::Throttled { retry_after_secs }) => assert!(retry_after_secs > 0),
            other => panic!("{other:?}"),
        }
        assert!(matches!(login(&env.id, "someone", "anything at all", "192.0.2.10").await,
            LoginOutcome::Rejected(LoginRejection::InvalidCredentials)), "other addresses are unaffected");
        env.done().await;
    }
}

both_backends! {
    async fn totp_enrolment_sign_in_replay_and_recovery_codes(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let uid = env.id.create_user(&Acting::system(Channel::Cli), user("mia", "my long password", &["security_analyst"])).await.unwrap();
        let me = Acting::anonymous(Channel::Ui).as_user(uid, "mia");
        let enrol = env.id.mfa_begin(uid).await.unwrap();
        assert!(enrol.otpauth_uri.contains(&format!("secret={}", enrol.secret_base32)));
        let secret = base32_decode(&enrol.secret_base32);
        let code_at = |t: i64| format!("{:06}", totp::hotp(&secret, totp::step_at(t), 6));
        assert!(env.id.mfa_confirm(&me, uid, "000000").await.is_err() || code_at(env.clock.now_us()) == "000000");
        let recovery = env.id.mfa_confirm(&me, uid, &code_at(env.clock.now_us())).await.unwrap();
        assert_eq!(recovery.len(), 10);

        env.clock.advance_us(60_000_000);
        let LoginOutcome::MfaRequired { user_id } = login(&env.id, "mia", "my long password", "10.2.0.1").await else { panic!() };
        assert!(matches!(env.id.login_mfa(&client("10.2.0.1"), user_id, "123456").await.unwrap(), LoginOutcome::Rejected(_))
            || code_at(env.clock.now_us()) == "123456");
        let code = code_at(env.clock.now_us());
        assert!(matches!(env.id.login_mfa(&client("10.2.0.1"), user_id, &code).await.unwrap(), LoginOutcome::Success(_)));
        assert!(matches!(env.id.login_mfa(&client("10.2.0.1"), user_id, &code).await.unwrap(), LoginOutcome::Rejected(_)),
            "a code cannot be replayed");
        assert!(matches!(env.id.login_mfa(&client("10.2.0.1"), user_id, &recovery[3]).await.unwrap(), LoginOutcome::Success(_)));
        assert!(matches!(env.id.login_mfa(&client("10.2.0.1"), user_id, &recovery[3]).await.unwrap(), LoginOutcome::Rejected(_)),
            "a recovery code works once");

        let events = env.events().await;
        let actions: Vec<_> = events.iter().map(|(a, o, _)| format!("{a}:{o}")).collect();
        for want in ["mfa.enroll:success", "mfa.verify:success", "mfa.verify:failure"] {
            assert!(actions.contains(&want.to_string()), "{want} in {actions:?}");
        }
        assert!(events.iter().all(|(_, _, p)| !p.contains(&enrol.secret_base32) && !p.contains(&recovery[0])));
        env.done().await;
    }
}

fn base32_decode(s: &str) -> Vec<u8> {
    data_encoding::BASE32_NOPAD.decode(s.as_bytes()).unwrap()
}

both_backends! {
    async fn api_keys_have_scopes_expire_and_can_be_revoked(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let admin = Acting::system(Channel::Cli);
        let (key, token) = env.id.create_api_key(&admin, "portal ingest", &[Scope::Ingest], Some(T0 + 3_600_000_000)).await.unwrap();
        let p = env.id.authenticate_api_key(token.expose_secret(), &client("10.3.0.1")).await.unwrap().valid().unwrap();
        assert_eq!(p.scopes, [Scope::Ingest]);
        assert!(p.permissions().allows(Permission::AuditIngest) && !p.permissions().allows(Permission::AuditRead));
        let listed = env.id.list_api_keys().await.unwrap();
        assert_eq!(listed[0].prefix, key.prefix);
        assert!(listed[0].last_used_us.is_some());

        let mut forged = token.expose_secret().to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(env.id.authenticate_api_key(&forged, &client("10.3.0.1")).await.unwrap().valid().is_none());
        env.clock.advance_us(3_600_000_001);
        assert!(env.id.authenticate_api_key(token.expose_secret(), &client("10.3.0.1")).await.unwrap().valid().is_none(), "expired");

        let (_, reader) = env.id.create_api_key(&admin, "reader", &[Scope::Read], None).await.unwrap();
        let reader_prefix = custos_engine::identity::apikey::prefix_of(reader.expose_secret()).unwrap().to_owned();
        // In use (so found valid a moment ago), then revoked: refused at once.
        assert!(env.id.authenticate_api_key(reader.expose_secret(), &client("10.3.0.2")).await.unwrap().valid().is_some());
        env.id.revoke_api_key(&admin, &reader_prefix).await.unwrap();
        // (From another address: refusals are recorded once per source and minute.)
        assert!(env.id.authenticate_api_key(reader.expose_secret(), &client("10.3.0.2")).await.unwrap().valid().is_none(), "revoked");
        assert!(env.id.create_api_key(&admin, "none", &[], None).await.is_err());

        let events = env.events().await;
        let denied: Vec<_> = events.iter().filter(|(a, o, _)| a == "apikey.use" && o == "denied").collect();
        assert_eq!(denied.len(), 3, "{denied:?}");
        for reason in ["wrong secret", "expired", "revoked"] {
            assert!(denied.iter().any(|(_, _, p)| p.contains(reason)), "{reason}");
        }
        assert!(events.iter().all(|(_, _, p)| !p.contains(token.expose_secret()) && !p.contains(reader.expose_secret())));
        env.done().await;
    }
}

both_backends! {
    async fn custom_roles_and_their_rules(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let admin = Acting::system(Channel::Cli);
        let perms = PermissionSet::of(&[Permission::AuditRead, Permission::AuditUnmask]);
        env.id.create_role(&admin, "auditor", "External auditor", &perms, true).await.unwrap();
        env.id.create_user(&admin, user("eve", "external auditor pw", &["auditor"])).await.unwrap();
        let LoginOutcome::Success(p) = login(&env.id, "eve", "external auditor pw", "10.4.0.1").await else { panic!() };
        assert!(p.allows(Permission::AuditUnmask) && p.mfa_required && !p.mfa_enabled);

        let err = env.id.update_role(&admin, "viewer", Some(&PermissionSet::of(&[Permission::Admin])), false).await.unwrap_err();
        assert!(matches!(err, IdentityError::Refused(_)), "{err}");
        env.id.update_role(&admin, "viewer", None, true).await.unwrap();
        assert!(env.id.list_roles().await.unwrap().iter().any(|r| r.name == "viewer" && r.require_mfa));
        assert!(matches!(env.id.delete_role(&admin, "auditor").await.unwrap_err(), IdentityError::Conflict(_)));
        assert!(matches!(env.id.delete_role(&admin, "admin").await.unwrap_err(), IdentityError::Refused(_)));
        env.id.set_roles(&admin, "eve", &["viewer".into()]).await.unwrap();
        env.id.delete_role(&admin, "auditor").await.unwrap();
        env.id.set_disabled(&admin, "eve", true).await.unwrap();
        assert!(env.id.principal(p.user_id).await.unwrap().is_none(), "a disabled user has no principal");
        assert!(matches!(login(&env.id, "eve", "external auditor pw", "10.4.0.1").await,
            LoginOutcome::Rejected(LoginRejection::InvalidCredentials)));

        let actions: Vec<_> = env.events().await.into_iter().map(|(a, _, _)| a).collect();
        for want in ["role.create", "role.update", "role.delete", "user.roles.update", "user.disable"] {
            assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
        }
        env.done().await;
    }
}

/// A signed-in user as an actor: what they may grant is what they hold.
async fn acting(env: &Env, name: &str) -> Acting {
    let LoginOutcome::Success(p) = login(&env.id, name, "long enough password", "10.9.0.1").await else {
        panic!("{name} signs in")
    };
    Acting::user(&p, Channel::Ui)
}

both_backends! {
    async fn user_management_cannot_grant_or_touch_more_than_it_holds(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let system = Acting::system(Channel::Cli);
        let managers = PermissionSet::of(&[Permission::UserManage, Permission::AuditRead]);
        env.id.create_role(&system, "user_admins", "", &managers, false).await.unwrap();
        env.id.create_role(&system, "mfa_admins", "", &PermissionSet::of(&[Permission::Admin]), true).await.unwrap();
        env.id.create_user(&system, user("manny", "long enough password", &["user_admins"])).await.unwrap();
        env.id.create_user(&system, user("root2", "long enough password", &["admin"])).await.unwrap();
        env.id.create_user(&system, user("vic", "long enough password", &["viewer"])).await.unwrap();
        let manny = acting(&env, "manny").await;
        let refused = |r: Result<(), IdentityError>, what: &str| match r {
            Err(IdentityError::Refused(m)) => assert!(m.contains("only an admin"), "{what}: {m}"),
            other => panic!("{what} must be refused: {other:?}"),
        };
        let admin_perms = PermissionSet::of(&[Permission::Admin]);
        refused(env.id.create_role(&manny, "escalate", "", &admin_perms, false).await, "a role with admin");
        let export = PermissionSet::of(&[Permission::AuditExport]);
        refused(env.id.create_role(&manny, "exporters", "", &export, false).await, "a role granting what he lacks");
        refused(env.id.create_user(&manny, user("sock", "long enough password", &["admin"])).await.map(|_| ()), "an admin user");
        refused(env.id.set_roles(&manny, "vic", &["admin".into()]).await, "granting admin");
        refused(env.id.set_roles(&manny, "root2", &["viewer".into()]).await, "demoting an admin");
        refused(env.id.reset_password(&manny, "root2", &secret("taken over password"), false).await, "an admin's password");
        refused(env.id.mfa_reset(&manny, "root2").await, "an admin's MFA");
        refused(env.id.set_disabled(&manny, "root2", true).await, "disabling an admin");
        refused(env.id.update_role(&manny, "mfa_admins", None, false).await, "lifting MFA from admins");
        // A role he fully holds, but one of its members outranks him.
        env.id.create_role(&system, "readers_mfa", "", &PermissionSet::of(&[Permission::AuditRead]), true).await.unwrap();
        env.id.create_user(&system, user("bigwig", "long enough password", &["readers_mfa", "admin"])).await.unwrap();
        match env.id.update_role(&manny, "readers_mfa", None, false).await {
            Err(IdentityError::Refused(m)) => assert!(m.contains("lifting the MFA requirement"), "{m}"),
            other => panic!("lifting MFA from a role with an admin member: {other:?}"),
        }
        let key = env.id.create_api_key(&manny, "reader", &[Scope::Read], None).await;
        assert!(key.is_ok(), "he holds audit:read: {key:?}");
        refused(env.id.create_api_key(&manny, "ingest", &[Scope::Ingest], None).await.map(|_| ()), "an ingest key");
        let (ingest_key, _) = env.id.create_api_key(&system, "production ingest", &[Scope::Ingest], None).await.unwrap();
        refused(env.id.revoke_api_key(&manny, &ingest_key.prefix).await, "revoking an ingest key");
        // Within what he holds, he may act.
        env.id.create_user(&manny, user("newbie", "long enough password", &["viewer"])).await.unwrap();
        env.id.reset_password(&manny, "vic", &secret("a fresh password 1"), true).await.unwrap();
        env.id.set_disabled(&manny, "vic", true).await.unwrap();
        // An admin may do all of it.
        let root = acting(&env, "root2").await;
        env.id.set_roles(&root, "vic", &["admin".into()]).await.unwrap();
        env.id.update_role(&root, "mfa_admins", None, false).await.unwrap();
        env.done().await;
    }
}

both_backends! {
    async fn credential_and_role_changes_move_the_session_epoch(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let system = Acting::system(Channel::Cli);
        let narrowed = PermissionSet::of(&[Permission::AuditRead, Permission::AuditExport]);
        env.id.create_role(&system, "narrowed", "", &narrowed, false).await.unwrap();
        let uid = env.id.create_user(&system, user("eve", "long enough password", &["viewer", "compliance_officer"])).await.unwrap();
        async fn epoch_of(env: &Env, uid: i64) -> Option<i64> {
            env.id.principal(uid).await.unwrap().map(|p| p.session_epoch)
        }
        let e0 = epoch_of(&env, uid).await.unwrap();
        let me = acting(&env, "eve").await;
        let e1 = env.id.change_password(&me, uid, &secret("long enough password"), &secret("another long password")).await.unwrap();
        assert!(e1 > e0, "a password change ends other sessions");
        assert_eq!(epoch_of(&env, uid).await, Some(e1));
        env.id.reset_password(&system, "eve", &secret("reset long password"), false).await.unwrap();
        let e2 = epoch_of(&env, uid).await.unwrap();
        assert!(e2 > e1, "a reset too");
        env.id.mfa_reset(&system, "eve").await.unwrap();
        let e3 = epoch_of(&env, uid).await.unwrap();
        assert!(e3 > e2, "an MFA reset too");
        env.id.set_roles(&system, "eve", &["viewer".into(), "compliance_officer".into(), "security_analyst".into()]).await.unwrap();
        assert_eq!(epoch_of(&env, uid).await, Some(e3), "adding a role keeps sessions");
        env.id.set_roles(&system, "eve", &["viewer".into(), "narrowed".into()]).await.unwrap();
        let e3 = epoch_of(&env, uid).await.unwrap();
        // A role that loses a permission ends its members' sessions; one that gains does not.
        env.id.update_role(&system, "narrowed", Some(&PermissionSet::of(&[Permission::AuditRead])), false).await.unwrap();
        let e3b = epoch_of(&env, uid).await.unwrap();
        assert!(e3b > e3, "narrowing a role ends its members' sessions");
        let wider = PermissionSet::of(&[Permission::AuditRead, Permission::AuditExport, Permission::AuditVerify]);
        env.id.update_role(&system, "narrowed", Some(&wider), false).await.unwrap();
        assert_eq!(epoch_of(&env, uid).await, Some(e3b), "widening keeps them");
        env.id.update_role(&system, "narrowed", None, true).await.unwrap();
        let e3 = epoch_of(&env, uid).await.unwrap();
        assert!(e3 > e3b, "requiring MFA ends them");
        env.id.set_roles(&system, "eve", &["viewer".into()]).await.unwrap();
        let e4 = epoch_of(&env, uid).await.unwrap();
        assert!(e4 > e3, "removing a role ends sessions");
        env.id.set_disabled(&system, "eve", true).await.unwrap();
        assert_eq!(epoch_of(&env, uid).await, None, "a disabled user has no session at all");
        env.id.set_disabled(&system, "eve", false).await.unwrap();
        let e5 = epoch_of(&env, uid).await.unwrap();
        assert!(e5 > e4, "sessions from before the disabling stay ended after re-enabling");
        env.done().await;
    }
}

both_backends! {
    async fn an_unknown_name_is_answered_like_an_account_and_recorded_as_a_pseudonym(backend: Backend) {
        let settings = IdentitySettings { lockout_threshold: 3, lockout_secs: 600, ..IdentitySettings::default() };
        let Some(env) = Env::new(backend, settings).await else { return };
        env.id.create_user(&Acting::system(Channel::Cli), user("ada", "correct horse battery", &["viewer"])).await.unwrap();
        // The same answers at the same attempts, known or not.
        for n in 1..=4 {
            let known = login(&env.id, "ada", "wrong password!!", &format!("10.7.0.{n}")).await;
            let unknown = login(&env.id, "hunter2-typed-as-name", "wrong password!!", &format!("10.8.0.{n}")).await;
            assert_eq!(format!("{known:?}"), format!("{unknown:?}"), "attempt {n}");
        }
        // After the lock runs out, both start counting afresh.
        env.clock.advance_us(601_000_000);
        let known = login(&env.id, "ada", "wrong password!!", "10.7.1.1").await;
        let unknown = login(&env.id, "hunter2-typed-as-name", "wrong password!!", "10.8.1.1").await;
        assert!(matches!(known, LoginOutcome::Rejected(LoginRejection::InvalidCredentials)), "{known:?}");
        assert_eq!(format!("{known:?}"), format!("{unknown:?}"));
        // A name no account can have is refused at once, without hashing.
        let huge = "n".repeat(100_000);
        assert!(matches!(login(&env.id, &huge, "x", "10.9.9.9").await, LoginOutcome::Rejected(LoginRejection::InvalidCredentials)));
        let events = env.events().await;
        let failures: Vec<_> = events.iter().filter(|(a, o, _)| a == "user.login" && o == "failure").collect();
        assert!(failures.iter().any(|(_, _, p)| p.contains("\"name:")), "{failures:?}");
        assert!(events.iter().all(|(_, _, p)| p.len() < 10_000), "nothing typed is stored, however long");
        assert!(events.iter().all(|(_, _, p)| !p.contains("hunter2-typed-as-name")), "what was typed is never stored");
        env.done().await;
    }
}

both_backends! {
    async fn a_totp_code_used_twice_at_once_signs_in_once(backend: Backend) {
        let Some(env) = Env::new(backend, IdentitySettings::default()).await else { return };
        let uid = env.id.create_user(&Acting::system(Channel::Cli), user("rex", "my long password", &["viewer"])).await.unwrap();
        let me = Acting::anonymous(Channel::Ui).as_user(uid, "rex");
        let enrol = env.id.mfa_begin(uid).await.unwrap();
        let secret_bytes = base32_decode(&enrol.secret_base32);
        let code_at = |t: i64| format!("{:06}", totp::hotp(&secret_bytes, totp::step_at(t), 6));
        env.id.mfa_confirm(&me, uid, &code_at(env.clock.now_us())).await.unwrap();
        env.clock.advance_us(60_000_000);
        let code = code_at(env.clock.now_us());
        let (c1, c2) = (client("10.2.0.1"), client("10.2.0.2"));
        let (a, b) = tokio::join!(env.id.login_mfa(&c1, uid, &code), env.id.login_mfa(&c2, uid, &code));
        let wins = [a.unwrap(), b.unwrap()].iter().filter(|o| matches!(o, LoginOutcome::Success(_))).count();
        assert_eq!(wins, 1, "exactly one of two racing sign-ins with one code succeeds");
        env.done().await;
    }
}

both_backends! {
    async fn parallel_sign_ins_cannot_outrun_the_address_throttle_and_noise_is_summarised(backend: Backend) {
        let settings = IdentitySettings { ip_failures: 3, noise_per_minute: 1000, ..IdentitySettings::default() };
        let Some(env) = Env::new(backend, settings).await else { return };
        // Ten wrong passwords at once from one address: slots are taken
        // before hashing, so at most three are ever checked.
        let attempts = (0..10).map(|i| {
            let id = &env.id;
            async move { login(id, &format!("name{i}"), "wrong password!!", "198.51.100.7").await }
        });
        let outcomes = futures_util::future::join_all(attempts).await;
        let throttled = outcomes.iter().filter(|o| matches!(o, LoginOutcome::Rejected(LoginRejection::Throttled { .. }))).count();
        // At least seven: on PostgreSQL an attempt that finds another holding
        // the address's shared count is refused too (retry in 1 s), so
        // fewer than three may be checked under load, never more.
        assert!((7..=9).contains(&throttled), "{outcomes:?}");
        let checked = outcomes.iter().filter(|o| matches!(o, LoginOutcome::Rejected(LoginRejection::InvalidCredentials))).count();
        assert_eq!(checked + throttled, 10, "{outcomes:?}");
        // The throttled ones are recorded once, then counted in one summary per minute.
        let denied = |events: &[(String, String, String)]| {
            events.iter().filter(|(a, o, _)| a == "user.login" && o == "denied").count()
        };
        assert_eq!(denied(&env.events().await), 1);
        env.clock.advance_us(60_000_000);
        env.id.record_noise_summaries().await;
        let events = env.events().await;
        let summary: Vec<_> = events.iter().filter(|(a, _, _)| a == "user.login.summary").collect();
        assert_eq!(summary.len(), 1, "{summary:?}");
        assert!(summary[0].2.contains(&format!("\"requests\":{}", throttled - 1)), "{}", summary[0].2);
        env.done().await;
    }
}

/// Replicas are processes with their own memory: on PostgreSQL the sign-in
/// throttles count in the database, so attempts spread over replicas buy
/// no more than on one. (SQLite has one process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_sign_in_throttles() {
    let settings = IdentitySettings { ip_failures: 4, name_failures: 3, ..IdentitySettings::default() };
    let Some(a) = Env::new(Backend::Postgres, settings.clone()).await else { return };
    // A second replica: its own ledger, identity service and memory.
    let (ledger, tasks) =
        Ledger::open(TestDb::connect(&a.db.url).await, &KEK, config(), a.clock.clone(), Arc::new(OsRandom))
            .await
            .unwrap();
    let events = Arc::new(
        custos_engine::events::Events::open(ledger.clone(), custos_engine::events::validate::Limits::default())
            .await
            .unwrap(),
    );
    let b = Identity::new(events, a.clock.clone(), Arc::new(OsRandom), settings).await.unwrap();
    let throttled = |o: &LoginOutcome| matches!(o, LoginOutcome::Rejected(LoginRejection::Throttled { .. }));

    // Four failures from one address, two on each replica: the fifth is
    // refused on both, though neither saw four.
    for i in 0..2 {
        assert!(!throttled(&login(&a.id, &format!("a{i}"), "wrong password!!", "192.0.2.50").await));
        assert!(!throttled(&login(&b, &format!("b{i}"), "wrong password!!", "192.0.2.50").await));
    }
    assert!(throttled(&login(&a.id, "c", "wrong password!!", "192.0.2.50").await));
    assert!(throttled(&login(&b, "c", "wrong password!!", "192.0.2.50").await));

    // One typed name from several addresses and replicas: locked at three.
    let mut outcomes = Vec::new();
    for (ip, on) in [("198.51.100.1", "a"), ("198.51.100.2", "b"), ("198.51.100.3", "a"), ("198.51.100.4", "b")] {
        let id = if on == "a" { &a.id } else { &b };
        outcomes.push(login(id, "root", "wrong password!!", ip).await);
    }
    assert!(matches!(outcomes[3], LoginOutcome::Rejected(LoginRejection::LockedOut)), "{outcomes:?}");

    // Past the window the counts lapse, and the sweep deletes them.
    a.clock.advance_us((IdentitySettings::default().lockout_secs.max(300) + 1) * 1_000_000);
    assert!(a.id.sweep_throttles().await.unwrap() >= 7);
    assert!(!throttled(&login(&b, "d", "wrong password!!", "192.0.2.50").await));
    ledger.shutdown(tasks).await.unwrap();
    a.done().await;
}
