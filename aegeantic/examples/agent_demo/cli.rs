//! The demo's command line: flags, the OpenAI SDKs' environment variables, and the help.

use std::time::Duration;

/// What `--help` prints.
pub const USAGE: &str = "\
An agent step that calls a tool, with every event printed as it happens.

Usage: cargo run --example agent_demo --features demo [-- OPTIONS]

Without a base URL the demo runs offline, against an in-process server that answers with
a 429, then a stream cut mid-way, then the tool call and the answer.

Options:
  --base-url URL          an OpenAI-compatible API root, such as https://api.openai.com/v1
                          (default: $OPENAI_BASE_URL; unset: the offline server)
  --model MODEL           the model; needed with a base URL
  --connect-timeout SECS  limit on establishing a connection (default 10)
  --response-timeout SECS limit on waiting for the response headers (default 60)
  --idle-timeout SECS     limit on silence within a streamed answer (default 60)
  -h, --help              print this and exit

Environment:
  OPENAI_API_KEY          sent as the bearer token
  OPENAI_BASE_URL         the base URL, when --base-url is not given

Each model call is tried up to 4 times, and each attempt may take as long as its
timeouts allow: an endpoint that accepts connections but never answers is given up after
about 4 x 60 s. `--response-timeout 5 --idle-timeout 5` gives up within half a minute.

Exit status: 0 when the step completes, 1 when it fails, 2 for a bad command line.
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `--help`.
    Help,
    /// A run.
    Run(Args),
}

/// A run's settings. Timeouts left unset keep the provider's defaults.
#[derive(Debug, Default, PartialEq)]
pub struct Args {
    /// The API root; `None` means the offline server.
    pub base_url: Option<String>,
    /// The model; `None` only offline.
    pub model: Option<String>,
    /// `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `--response-timeout`.
    pub response_timeout: Option<Duration>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
}

/// Parses the arguments (without the program name), reading the environment through `env`,
/// which returns a variable's value when it is set and not empty.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut parsed = Args {
        api_key: env("OPENAI_API_KEY"),
        ..Args::default()
    };
    let args: Vec<String> = args.into_iter().collect();
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        return Ok(Command::Help);
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--base-url" => parsed.base_url = Some(value()?),
            "--model" => parsed.model = Some(value()?),
            "--connect-timeout" => parsed.connect_timeout = Some(seconds(&flag, &value()?)?),
            "--response-timeout" => parsed.response_timeout = Some(seconds(&flag, &value()?)?),
            "--idle-timeout" => parsed.idle_timeout = Some(seconds(&flag, &value()?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    parsed.base_url = parsed.base_url.or_else(|| env("OPENAI_BASE_URL"));
    if parsed.base_url.is_some() && parsed.model.is_none() {
        return Err("--model is needed with a base URL (--base-url or OPENAI_BASE_URL)".into());
    }
    Ok(Command::Run(parsed))
}

/// A positive, finite number of seconds that a `Duration` can hold.
fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{flag} takes a positive number of seconds, not {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        parse(args.iter().map(|arg| arg.to_string()), |name| {
            env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        })
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Args {
        match parse_with(args, env) {
            Ok(Command::Run(args)) => args,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn help_wins_wherever_it_is() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["--model", "m", "--help"],
            &["--bogus", "-h"],
        ] {
            assert_eq!(parse_with(args, &[]), Ok(Command::Help), "{args:?}");
        }
    }

    #[test]
    fn no_arguments_is_the_offline_run() {
        assert_eq!(run(&[], &[]), Args::default());
    }

    #[test]
    fn the_openai_variables_are_honoured_and_flags_win() {
        let env = [
            ("OPENAI_BASE_URL", "http://proxy/v1"),
            ("OPENAI_API_KEY", "sk-1"),
        ];
        let args = run(&["--model", "m"], &env);
        assert_eq!(args.base_url.as_deref(), Some("http://proxy/v1"));
        assert_eq!(args.api_key.as_deref(), Some("sk-1"));
        let args = run(&["--base-url=http://other/v1", "--model=m"], &env);
        assert_eq!(args.base_url.as_deref(), Some("http://other/v1"));
        assert!(parse_with(&[], &env)
            .unwrap_err()
            .contains("--model is needed"));
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        let args = run(
            &[
                "--connect-timeout",
                "2",
                "--response-timeout=0.5",
                "--idle-timeout",
                "90",
            ],
            &[],
        );
        assert_eq!(args.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(args.response_timeout, Some(Duration::from_millis(500)));
        assert_eq!(args.idle_timeout, Some(Duration::from_secs(90)));
        for bad in ["0", "-1", "NaN", "inf", "1e30", "soon", ""] {
            let error = parse_with(&["--idle-timeout", bad], &[]).unwrap_err();
            assert!(
                error.contains("positive number of seconds"),
                "{bad}: {error}"
            );
        }
        assert_eq!(
            parse_with(&["--idle-timeout"], &[]),
            Err("--idle-timeout needs a value".into())
        );
        assert!(parse_with(&["--retries", "3"], &[])
            .unwrap_err()
            .contains("unknown"));
    }
}
