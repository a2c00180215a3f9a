//! Services of sessions as the daemon keeps them: started in the guest and
//! stored (`store/services.rs`), so that a session that stops and starts
//! again, or is restored to a checkpoint, runs them again with their restart
//! policy.
//!
//! A service the API, the CLI, the UI or the agent starts is stored wanted
//! running; stopping it keeps its spec (the UI and `firepit service start`
//! start it again by name) but not running; `forget` deletes it. The daemon's
//! own services (the agent's browser) go to the guest directly and are never
//! stored.
//!
//! **Decision (the run command):** a project's run command is the service
//! named [`RUN`], an ordinary stored service: the UI's Run button restarts it
//! (or asks for its command the first time), `firepit service restart ID run`
//! does the same, and the agent's `service_start` with the name `run` and no
//! command starts the stored one.

use firepit_guest_client::{ErrorKind, GuestClient};
use firepit_wire::api::{ServiceInfo, ServiceSpec, ServiceState};

use crate::{App, Error};

/// The name of the project's run command.
pub const RUN: &str = "run";

/// A stored service that does not run, as the list shows it.
fn stopped(spec: ServiceSpec) -> ServiceInfo {
    ServiceInfo {
        name: spec.name.clone(),
        state: ServiceState::Stopped,
        pid: None,
        restarts: 0,
        last_exit: None,
        spec,
    }
}

/// The largest spec (as JSON) taken from what a machine lists to be kept.
pub const MAX_SPEC_FROM_MACHINE: usize = 64 * 1024;

/// A spec a machine listed, if the API would take it and it is small: the
/// machine's word is kept in the store only within the API's own rules.
fn from_machine(spec: ServiceSpec) -> Option<ServiceSpec> {
    let fits = crate::api::valid::service_name(&spec.name).is_ok()
        && crate::api::valid::command(&spec.command).is_ok()
        && crate::api::valid::env(&spec.env).is_ok()
        && crate::api::valid::cwd(spec.cwd.as_deref()).is_ok()
        && serde_json::to_vec(&spec).is_ok_and(|b| b.len() <= MAX_SPEC_FROM_MACHINE);
    fits.then_some(spec)
}

fn runs(info: &ServiceInfo) -> bool {
    matches!(info.state, ServiceState::Running | ServiceState::Backoff)
}

impl App {
    fn service_not_found(id: &str, name: &str) -> Error {
        Error::ServiceNotFound {
            session: id.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Starts `spec` in session `id` and keeps it, wanted running. What the
    /// store kept under its name before is kept again if the guest refuses.
    pub async fn start_service(&self, id: &str, spec: ServiceSpec) -> Result<ServiceInfo, Error> {
        let guest = self.guest(id).await?;
        let before = self.store().service(id, &spec.name)?;
        self.store().put_service(id, &spec, true)?;
        match guest.service_start(spec.clone()).await {
            Ok(info) => Ok(info),
            Err(e) => {
                match before {
                    Some(b) => self.store().put_service(id, &b.spec, b.autostart)?,
                    None => {
                        self.store().delete_service(id, &spec.name)?;
                    }
                }
                Err(Error::starting(e))
            }
        }
    }

    /// Starts session `id`'s stored service `name` again.
    pub async fn start_stored_service(&self, id: &str, name: &str) -> Result<ServiceInfo, Error> {
        let guest = self.guest(id).await?;
        let spec = match self.store().service(id, name)? {
            Some(s) => s.spec,
            // One the guest knows (started before specs were kept) may start again too.
            None => guest
                .service_list()
                .await
                .map_err(Error::Guest)?
                .into_iter()
                .find(|s| s.name == name)
                .and_then(|s| from_machine(s.spec))
                .ok_or_else(|| Self::service_not_found(id, name))?,
        };
        self.start_service(id, spec).await
    }

    /// Stops session `id`'s service `name`; its spec is kept, not running.
    pub async fn stop_service(&self, id: &str, name: &str) -> Result<(), Error> {
        let guest = self.guest(id).await?;
        let stored = self.store().set_service_autostart(id, name, false)?;
        match guest.service_stop(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && stored => Ok(()),
            Err(e) => Err(Error::Guest(e)),
        }
    }

    /// Stops session `id`'s service `name` (if it runs) and starts it again
    /// with its kept spec (or the spec it runs with).
    pub async fn restart_service(&self, id: &str, name: &str) -> Result<ServiceInfo, Error> {
        let guest = self.guest(id).await?;
        let running = guest
            .service_list()
            .await
            .map_err(Error::Guest)?
            .into_iter()
            .find(|s| s.name == name);
        let spec = match (self.store().service(id, name)?, &running) {
            (Some(s), _) => s.spec,
            (None, Some(r)) => {
                from_machine(r.spec.clone()).ok_or_else(|| Self::service_not_found(id, name))?
            }
            (None, None) => return Err(Self::service_not_found(id, name)),
        };
        if running.as_ref().is_some_and(runs) {
            guest.service_stop(name).await.map_err(Error::Guest)?;
        }
        self.start_service(id, spec).await
    }

    /// Stops session `id`'s service `name` if it runs and forgets its spec.
    pub async fn forget_service(&self, id: &str, name: &str) -> Result<(), Error> {
        let had = self.store().delete_service(id, name)?;
        match self.guest(id).await {
            Ok(guest) => match guest.service_stop(name).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound && had => Ok(()),
                Err(e) => Err(Error::Guest(e)),
            },
            Err(Error::SessionNotRunning(_)) if had => Ok(()),
            Err(Error::SessionNotRunning(_)) => Err(Self::service_not_found(id, name)),
            Err(e) => Err(e),
        }
    }

    /// Session `id`'s services: what its guest runs (or ran) and the kept
    /// ones that do not run, by name. A stopped session lists its kept ones.
    pub async fn list_services(&self, id: &str) -> Result<Vec<ServiceInfo>, Error> {
        let mut list = match self.guest(id).await {
            Ok(g) => g.service_list().await.map_err(Error::Guest)?,
            Err(Error::SessionNotRunning(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for s in self.store().services(id)? {
            if !list.iter().any(|l| l.name == s.spec.name) {
                list.push(stopped(s.spec));
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Empties the log of session `id`'s service `name`.
    pub async fn clear_service_log(&self, id: &str, name: &str) -> Result<(), Error> {
        self.guest(id)
            .await?
            .service_clear_log(name)
            .await
            .map_err(Error::Guest)
    }

    /// Starts, on a session's fresh machine, its kept services that are
    /// wanted running and the specs in `also` (what ran before a restore),
    /// each name once, the kept spec first. Returns the names that started;
    /// one that does not start is logged and left.
    pub(crate) async fn bring_back_services(
        &self,
        id: &str,
        guest: &GuestClient,
        also: Vec<ServiceSpec>,
    ) -> Vec<String> {
        let mut specs: Vec<ServiceSpec> = match self.store().services(id) {
            Ok(kept) => kept
                .into_iter()
                .filter(|s| s.autostart)
                .map(|s| s.spec)
                .collect(),
            Err(e) => {
                tracing::warn!(session = %id, error = %crate::error::chain(&e), "could not read the kept services");
                Vec::new()
            }
        };
        for spec in also {
            if !specs.iter().any(|s| s.name == spec.name) {
                specs.push(spec);
            }
        }
        let mut started = Vec::new();
        for spec in specs {
            let name = spec.name.clone();
            match guest.service_start(spec).await {
                Ok(_) => started.push(name),
                Err(e) => {
                    tracing::warn!(session = %id, service = %name, error = %crate::error::chain(&e), "a service did not start again")
                }
            }
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_wire::api::{Command, RestartPolicy};

    fn spec(name: &str, line: String) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command: Command::Shell(line),
            env: Vec::new(),
            cwd: None,
            restart: RestartPolicy::OnFailure,
        }
    }

    #[test]
    fn a_machines_spec_is_kept_only_within_the_apis_rules_and_small() {
        assert!(from_machine(spec("web", "python3 -m http.server".into())).is_some());
        assert!(from_machine(spec("a/b", "true".into())).is_none());
        assert!(from_machine(spec(&"x".repeat(65), "true".into())).is_none());
        assert!(from_machine(spec("big", "x".repeat(MAX_SPEC_FROM_MACHINE))).is_none());
        let mut relative = spec("rel", "true".into());
        relative.cwd = Some("../etc".into());
        assert!(from_machine(relative).is_none());
    }
}
