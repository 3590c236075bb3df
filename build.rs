//! Build script: records the git commit the binary is built from, for `--version`
//! (`REDIS_CONNECTOR_COMMIT`) and for `serve`'s `build_info` metric
//! (`REDIS_CONNECTOR_COMMIT_HASH`: the short hash alone). Built from a source
//! archive (no `.git`, or no `git`), the version says so instead and the hash is
//! `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let hash = git(&["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=REDIS_CONNECTOR_COMMIT_HASH={}",
        hash.as_deref().unwrap_or("unknown")
    );
    let commit = match hash {
        Some(hash) => {
            // Rebuild when HEAD moves (a commit, a checkout) or the branch's ref does.
            for path in ["HEAD", "index"] {
                if let Some(file) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
            if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(file) = git(&["rev-parse", "--git-path", &reference]) {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
            let modified = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            format!("commit {hash}{}", if modified { " with local changes" } else { "" })
        }
        None => "built outside git: commit unknown".to_owned(),
    };
    println!("cargo:rustc-env=REDIS_CONNECTOR_COMMIT={commit}");
}
