//! What a triage job writes: the branch of an issue, the agent's task, the
//! pull request's description. Pure functions.

use firepit_forge::{Issue, RepoName};

/// The issue's text and comments given to the agent are cut to this.
const TASK_LIMIT: usize = 32 << 10;

/// The branch of issue `n`.
pub fn branch(n: u64) -> String {
    format!("firepit/issue-{n}")
}

/// The agent's task: the issue's text and comments, and what firepit does
/// after it (so it does not commit or push itself).
pub fn task(repo: &RepoName, issue: &Issue, comments: &[firepit_forge::Comment]) -> String {
    let mut t = format!(
        "Work on issue #{} of {repo}: {}\n\n{}\n",
        issue.number,
        issue.title,
        issue.body.as_deref().unwrap_or("(no description)").trim()
    );
    if !comments.is_empty() {
        t.push_str("\nComments on the issue, oldest first:\n");
        for c in comments {
            t.push_str(&format!("\n@{}:\n{}\n", c.user, c.body.trim()));
        }
    }
    if t.len() > TASK_LIMIT {
        let mut end = TASK_LIMIT;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.push_str("\n[… the issue is longer; this is its start]\n");
    }
    t.push_str(&format!(
        "\nThe repository is cloned at /workspace, on the branch {}. Make the change the issue asks for, \
         run the project's tests, and finish with a short summary of what you changed. Do not commit or push: \
         firepit commits, pushes and opens the pull request when you are done.",
        branch(issue.number)
    ));
    t
}

/// The pull request's description.
pub fn pull_body(
    issue: u64,
    summary: &str,
    diffstat: &str,
    tests: &str,
    test_tail: &str,
) -> String {
    let mut b = format!("Closes #{issue}.\n\n## What changed\n\n");
    b.push_str(if summary.trim().is_empty() {
        "(the agent gave no summary)"
    } else {
        summary.trim()
    });
    if !diffstat.trim().is_empty() {
        b.push_str(&format!("\n\n```\n{}\n```", diffstat.trim_end()));
    }
    b.push_str(&format!("\n\n## Tests\n\n{tests}\n"));
    if !test_tail.trim().is_empty() {
        b.push_str(&format!(
            "\n<details><summary>test output (end)</summary>\n\n```\n{}\n```\n</details>\n",
            test_tail.trim_end()
        ));
    }
    b.push_str("\n---\nOpened by firepit's agent from a triage run.\n");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pull_request_links_the_issue_and_names_the_tests() {
        let b = pull_body(
            7,
            "Fixed the greeting.",
            " a.py | 2 +-",
            "`make test` passed.",
            "ok",
        );
        assert!(b.starts_with("Closes #7."), "{b}");
        assert!(
            b.contains("Fixed the greeting.") && b.contains("a.py | 2 +-"),
            "{b}"
        );
        assert!(b.contains("## Tests\n\n`make test` passed."), "{b}");
        let empty = pull_body(7, " ", "", "No tests found.", "");
        assert!(empty.contains("(the agent gave no summary)"), "{empty}");
        assert!(!empty.contains("<details>"), "{empty}");
    }

    #[test]
    fn the_task_carries_the_issue_and_its_comments_bounded() {
        let repo: RepoName = "o/r".parse().unwrap();
        let issue: Issue = serde_json::from_value(serde_json::json!({
            "number": 3, "title": "Greet", "body": "Say hello"
        }))
        .unwrap();
        let c: firepit_forge::Comment = serde_json::from_value(serde_json::json!({
            "user": {"login": "ann"}, "body": "in French please"
        }))
        .unwrap();
        let t = task(&repo, &issue, &[c]);
        assert!(
            t.contains("issue #3 of o/r: Greet") && t.contains("Say hello"),
            "{t}"
        );
        assert!(t.contains("@ann:\nin French please"), "{t}");
        assert!(t.contains("firepit/issue-3"), "{t}");
        let long: Issue = serde_json::from_value(serde_json::json!({
            "number": 4, "title": "Long", "body": "é".repeat(40_000)
        }))
        .unwrap();
        assert!(task(&repo, &long, &[]).len() < TASK_LIMIT + 1000);
    }
}
