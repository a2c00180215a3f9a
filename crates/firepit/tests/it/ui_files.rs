//! The web UI's Files tab end to end, in real headless Chromium driven by
//! playwright-core from `ui/e2e/files.mjs` (the runner's parts are
//! `ui.rs`'s): create, rename, upload (file input, a drop, a whole folder
//! by the folder input and by a drop; names that would leave the folder
//! refused), download (a file, a folder as tar), delete, a change made in
//! the machine appearing in the tree, editing with Tab, the unsaved-changes
//! guard, search, the Changes view (since the last checkpoint, and switched
//! to since the start), a problem's traceback path as a link, and the tab at
//! 1440x900 and 390x844. Each step's screenshot is kept in
//! `<target dir>/tmp/ui-files-e2e/`.

use crate::harness::Daemon;
use crate::ui::run_script;

#[test]
fn the_files_tab_works_end_to_end_in_chromium() {
    let d = Daemon::start("t91");
    run_script(
        &d,
        "files.mjs",
        "ui-files-e2e",
        &[("E2E_IMAGE", "git".as_ref())],
        &[
            "open-files",
            "create-file-and-folder",
            "edit-with-tab",
            "rename",
            "upload-file-input",
            "upload-drag-and-drop",
            "upload-folder-input",
            "upload-folder-drop",
            "upload-bad-names-refused",
            "download",
            "delete",
            "external-change",
            "unsaved-guard",
            "search",
            "changes",
            "problem-link",
            "wide-1440x900",
            "narrow-390x844",
        ],
    );
}
