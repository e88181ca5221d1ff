//! Detection of the unsafe `exec` setting: a shell running a templated script.

use crate::config::ExecSettings;

/// Programs that run an argument as a script (`sh -c SCRIPT`, `cmd /c ...`,
/// `powershell -Command ...`).
const SHELLS: [&str; 14] = [
    "sh",
    "bash",
    "dash",
    "zsh",
    "ash",
    "ksh",
    "mksh",
    "yash",
    "fish",
    "csh",
    "tcsh",
    "cmd",
    "powershell",
    "pwsh",
];

/// A warning when `command` is a shell whose script argument is a template: a value such as
/// an alert title then becomes shell code, which is the injection running the program
/// directly prevents. `None` for the safe forms (values as their own arguments, or a fixed
/// script reading `"$1"` or the environment).
pub fn shell_warning(name: &str, s: &ExecSettings) -> Option<String> {
    let argv: Vec<&str> = std::iter::once(s.command.as_str())
        .chain(s.args.iter().map(String::as_str))
        .collect();
    // `env [-i] [VAR=x] sh -c ...` and `busybox sh -c ...` start the shell too.
    let mut i = 0;
    while let Some(arg) = argv.get(i) {
        let base = program_name(arg);
        if base == "env" || base == "busybox" {
            i += 1;
            while argv
                .get(i)
                .is_some_and(|a| a.starts_with('-') || (a.contains('=') && !a.contains("{{")))
            {
                i += 1;
            }
        } else {
            break;
        }
    }
    let shell = program_name(argv.get(i)?);
    if !SHELLS.contains(&shell.as_str()) {
        return None;
    }
    let rest = argv.get(i + 1..).unwrap_or_default();
    let templated = |a: &&str| a.contains("{{") || a.contains("{%");
    let flag = rest.iter().position(|a| {
        let lower = a.to_ascii_lowercase();
        match shell.as_str() {
            "cmd" => lower == "/c" || lower == "/k",
            "powershell" | "pwsh" => {
                lower == "-c"
                    || lower == "-command"
                    || lower == "-encodedcommand"
                    || lower == "-ec"
                    || lower == "/c"
                    || lower == "/command"
            }
            // `-c`, and combined short options such as `-ec` or `-lc`.
            _ => lower.starts_with('-') && !lower.starts_with("--") && lower.contains('c'),
        }
    })?;
    let after = rest.get(flag + 1..).unwrap_or_default();
    let risky = match shell.as_str() {
        // Everything after the flag is the command line.
        "cmd" | "powershell" | "pwsh" => after.iter().any(templated),
        // The script is the next argument; later ones are "$0", "$1", ... and stay data.
        _ => after.first().is_some_and(templated),
    };
    risky.then(|| {
        format!(
            "backend `{name}`: `{shell}` runs a templated script, so an alert text can run \
             commands (shell injection); run the program directly with each value as its own \
             argument (`command: /usr/local/bin/send-alert`, `args: [\"--to\", \"{{{{ phone }}}}\"]`), \
             or keep the script fixed and read \"$1\" or the ONCALL_RELAY_* variables"
        )
    })
}

/// A program's file name, lower-case, without directory or `.exe`.
fn program_name(path: &str) -> String {
    let base = path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(path)
        .to_ascii_lowercase();
    base.strip_suffix(".exe")
        .map(str::to_string)
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(command: &str, args: &[&str]) -> ExecSettings {
        ExecSettings {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Default::default(),
            permanent_exit_codes: vec![2],
            timeout: Duration::from_secs(1),
            max_segments: None,
        }
    }

    fn warns(command: &str, args: &[&str]) -> bool {
        shell_warning("b", &settings(command, args)).is_some()
    }

    #[test]
    fn a_shell_running_a_templated_script_is_flagged() {
        assert!(warns("sh", &["-c", "send --text '{{ message }}'"]));
        assert!(warns("/bin/bash", &["-ec", "send {{ phone }}"]));
        assert!(warns(
            "/usr/bin/env",
            &["-i", "LANG=C", "dash", "-c", "x {{ message }}"]
        ));
        assert!(warns("busybox", &["ash", "-c", "x {{ message }}"]));
        assert!(warns("zsh", &["-c", "{% if important %}x{% endif %}"]));
        assert!(warns("ksh", &["-c", "x {{ id }}"]));
        assert!(warns(
            "C:\\Windows\\System32\\CMD.EXE",
            &["/C", "send", "{{ message }}"]
        ));
        assert!(warns(
            "pwsh",
            &["-NoProfile", "-Command", "Send {{ message }}"]
        ));
        assert!(warns(
            "powershell.exe",
            &["-c", "Send-Alert '{{ message }}'"]
        ));
    }

    #[test]
    fn safe_forms_are_not_flagged() {
        // The program directly, each value its own argument.
        assert!(!warns(
            "/usr/local/bin/send-alert",
            &["--to", "{{ phone }}", "--text", "{{ message }}"]
        ));
        // A fixed script with the values as positional parameters or from the environment.
        assert!(!warns(
            "sh",
            &[
                "-c",
                "send --to \"$1\" --text \"$2\"",
                "sh",
                "{{ phone }}",
                "{{ message }}"
            ]
        ));
        assert!(!warns(
            "bash",
            &["-c", "send --text \"$ONCALL_RELAY_MESSAGE\""]
        ));
        // A script file, not `-c`.
        assert!(!warns("sh", &["/etc/relay/send.sh", "{{ message }}"]));
        // Not a shell.
        assert!(!warns("shellcheck", &["-c", "{{ message }}"]));
    }
}
