//! Build progress: the phases of a build, parsed from mmdebstrap's and debootstrap's `I:` lines
//! and reported to a callback together with the time since the build started.

use std::fmt;
use std::time::Duration;

/// A phase of an image build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Looking at the host, choosing the mirror, starting the builder.
    Prepare,
    /// Fetching and resolving package indices.
    Update,
    /// Downloading packages.
    Download,
    /// Unpacking packages.
    Extract,
    /// Installing and configuring packages.
    Install,
    /// The builder's own cleanup.
    Cleanup,
    /// firepit's finishing touches: hostname, directories, apt configuration.
    Finalize,
    /// Shifting owners into the machines' uid range.
    Shift,
    /// The image is in place.
    Done,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Prepare => "preparing",
            Phase::Update => "reading package lists",
            Phase::Download => "downloading packages",
            Phase::Extract => "extracting packages",
            Phase::Install => "installing packages",
            Phase::Cleanup => "cleaning up",
            Phase::Finalize => "finishing the image",
            Phase::Shift => "shifting owners",
            Phase::Done => "done",
        })
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The phase the build is in.
    pub phase: Phase,
    /// The line that moved it there (the builder's output, without its `I: ` prefix).
    pub message: String,
    /// Time since the build started.
    pub elapsed: Duration,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>5.1}s] {}: {}",
            self.elapsed.as_secs_f64(),
            self.phase,
            self.message
        )
    }
}

/// The phase an informational builder line (`I: ...`) announces, if any.
pub fn parse_line(line: &str) -> Option<(Phase, &str)> {
    let msg = line.strip_prefix("I: ")?.trim();
    let lower = msg.to_ascii_lowercase();
    let has = |w: &str| lower.contains(w);
    let phase = if has("apt-get update")
        || has("resolving")
        || (has("retrieving") && has("release"))
        || has("retrieving packages")
        || has("validating")
        || has("checking component")
    {
        Phase::Update
    } else if has("download") || has("retrieving") {
        Phase::Download
    } else if has("extract") || has("unpacking") {
        Phase::Extract
    } else if has("install") || has("configuring") {
        Phase::Install
    } else if has("clean") {
        Phase::Cleanup
    } else {
        return None;
    };
    Some((phase, msg))
}

/// A line of apt's or dpkg's own output (mmdebstrap passes it on with `--verbose`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AptLine<'a> {
    /// `N newly installed`: how many packages this step installs.
    Planned(usize),
    /// `Get:N … PACKAGE …`: a download started.
    Get(&'a str),
    /// `Unpacking PACKAGE …`.
    Unpacking(&'a str),
    /// `Setting up PACKAGE …`.
    SettingUp(&'a str),
}

/// Parse a line of apt's or dpkg's output that says how a step moves.
pub fn parse_apt_line(line: &str) -> Option<AptLine<'_>> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("Get:") {
        // Get:12 http://host/debian trixie/main amd64 nodejs amd64 20.19.2 [300 kB]
        let words: Vec<&str> = rest.split_whitespace().collect();
        return words.get(4).map(|p| AptLine::Get(p));
    }
    if let Some(rest) = line.strip_prefix("Unpacking ") {
        return rest.split_whitespace().next().map(AptLine::Unpacking);
    }
    if let Some(rest) = line.strip_prefix("Setting up ") {
        return rest.split_whitespace().next().map(AptLine::SettingUp);
    }
    let (_, after) = line.split_once(" upgraded, ")?;
    let (n, _) = after.split_once(" newly installed")?;
    n.trim().parse().ok().map(AptLine::Planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmdebstrap_lines() {
        let cases = [
            ("I: running apt-get update...", Some(Phase::Update)),
            ("I: downloading packages with apt...", Some(Phase::Download)),
            ("I: extracting archives...", Some(Phase::Extract)),
            ("I: installing essential packages...", Some(Phase::Install)),
            (
                "I: installing remaining packages inside the chroot...",
                Some(Phase::Install),
            ),
            (
                "I: cleaning package lists and apt cache...",
                Some(Phase::Cleanup),
            ),
            (
                "I: chroot architecture amd64 is equal to the host's architecture",
                None,
            ),
            ("Get:1 http://x bookworm InRelease", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line).map(|(p, _)| p), want, "{line}");
        }
        assert_eq!(
            parse_line("I: extracting archives...").unwrap().1,
            "extracting archives..."
        );
    }

    #[test]
    fn debootstrap_lines() {
        let cases = [
            ("I: Retrieving InRelease ", Phase::Update),
            ("I: Retrieving Packages ", Phase::Update),
            ("I: Validating Packages ", Phase::Update),
            (
                "I: Resolving dependencies of required packages...",
                Phase::Update,
            ),
            ("I: Retrieving libc6 2.36-9", Phase::Download),
            ("I: Extracting bash...", Phase::Extract),
            ("I: Unpacking the base system...", Phase::Extract),
            ("I: Installing core packages...", Phase::Install),
            ("I: Configuring apt...", Phase::Install),
            ("I: Base system installed successfully.", Phase::Install),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line).map(|(p, _)| p), Some(want), "{line}");
        }
    }

    #[test]
    fn apt_lines() {
        let cases = [
            (
                "Get:12 http://m.invalid/debian trixie/main amd64 nodejs amd64 20.19.2+dfsg-1 [300 kB]",
                Some(AptLine::Get("nodejs")),
            ),
            (
                "Unpacking libc6:amd64 (2.41-12) ...",
                Some(AptLine::Unpacking("libc6:amd64")),
            ),
            (
                "Setting up postgresql-17 (17.12-0+deb13u1) ...",
                Some(AptLine::SettingUp("postgresql-17")),
            ),
            (
                "0 upgraded, 912 newly installed, 0 to remove and 0 not upgraded.",
                Some(AptLine::Planned(912)),
            ),
            ("Reading package lists...", None),
            ("I: extracting archives...", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_apt_line(line), want, "{line}");
        }
    }

    #[test]
    fn display() {
        let p = Progress {
            phase: Phase::Download,
            message: "downloading packages with apt...".into(),
            elapsed: Duration::from_millis(2500),
        };
        assert_eq!(
            p.to_string(),
            "[  2.5s] downloading packages: downloading packages with apt..."
        );
    }
}
