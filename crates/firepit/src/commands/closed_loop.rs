//! `firepit closed-loop`: what a session does with the problems it finds
//! (`GET`/`PUT /v1/sessions/{id}/closed-loop`).

use anyhow::{Context, Result};
use firepit_wire::api::{ClosedLoopChange, ClosedLoopSettings};
use reqwest::Method;

use crate::cli::{ClosedLoopArgs, Switch};
use crate::client::Client;

/// `firepit closed-loop ID [--wake-agent on|off] [--preview-reports on|off]`:
/// changes what is given, then prints the settings.
pub async fn closed_loop(client: &Client, args: &ClosedLoopArgs) -> Result<()> {
    let path = format!("/v1/sessions/{}/closed-loop", args.id);
    let on = |s: Option<Switch>| s.map(|s| s == Switch::On);
    let change = ClosedLoopChange {
        wake_agent: on(args.wake_agent),
        preview_reports: on(args.preview_reports),
    };
    let req = if change == ClosedLoopChange::default() {
        client.request(Method::GET, &path)
    } else {
        client.request(Method::PUT, &path).json(&change)
    };
    let settings: ClosedLoopSettings = client
        .send(req)
        .await?
        .json()
        .await
        .context("reading the settings")?;
    print!("{}", text(&settings));
    Ok(())
}

fn text(s: &ClosedLoopSettings) -> String {
    let word = |b: bool| if b { "on" } else { "off" };
    format!(
        "wake-agent       {}\npreview-reports  {}\n",
        word(s.wake_agent),
        word(s.preview_reports)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_print_one_per_line() {
        let s = ClosedLoopSettings {
            wake_agent: true,
            preview_reports: false,
        };
        assert_eq!(text(&s), "wake-agent       on\npreview-reports  off\n");
    }
}
