//! A session's browser: started on first use, reused, and started again
//! (with a note for the agent) when it went away on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, watch};

use crate::Error;
use crate::launch::Launcher;
use crate::page::Page;

/// The note an agent gets with the first answer after a restart.
pub const RESTARTED: &str = "note: the browser had stopped (it crashed or was killed) and was started again; open the page again, its state was lost";

/// One session's browser.
pub struct Browser {
    launcher: Launcher,
    page: Mutex<Option<Page>>,
    current: watch::Sender<Option<Page>>,
    stopping: AtomicBool,
}

impl Browser {
    /// A browser not started yet.
    pub fn new(launcher: Launcher) -> Arc<Browser> {
        Arc::new(Browser {
            launcher,
            page: Mutex::new(None),
            current: watch::channel(None).0,
            stopping: AtomicBool::new(false),
        })
    }

    /// The page, starting the browser if it does not run. The note says the
    /// browser was restarted after it went away.
    pub async fn page(self: &Arc<Self>) -> Result<(Page, Option<&'static str>), Error> {
        let mut slot = self.page.lock().await;
        let mut note = None;
        if let Some(p) = slot.as_ref() {
            if !p.is_closed() {
                return Ok((p.clone(), None));
            }
            note = Some(RESTARTED);
        }
        *slot = None;
        self.stopping.store(false, Ordering::SeqCst);
        let page = self.launcher.launch().await?;
        *slot = Some(page.clone());
        self.current.send_replace(Some(page.clone()));
        let (me, p) = (Arc::downgrade(self), page.clone());
        tokio::spawn(async move {
            p.closed().await;
            if let Some(me) = me.upgrade() {
                me.current.send_if_modified(|c| {
                    let same = c.as_ref().is_some_and(|c| c.is_closed());
                    if same {
                        *c = None;
                    }
                    same
                });
            }
        });
        Ok((page, note))
    }

    /// The running page, if any, now and as it changes (for the live view
    /// and the problem watcher).
    pub fn current(&self) -> watch::Receiver<Option<Page>> {
        self.current.subscribe()
    }

    /// Whether the last page went away because [`Browser::stop`] stopped it.
    pub fn stopped_on_purpose(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Stops the browser.
    pub async fn stop(&self) -> Result<(), Error> {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.page.lock().await.take();
        self.launcher.stop().await
    }
}
