//! The `oncall-relay` command: parses the command line and hands it to the subcommand's
//! module under `cli/`; `serve` runs the service, the other subcommands manage it.

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use oncall_relay::config::Settings;
use oncall_relay::telemetry;

fn main() -> std::process::ExitCode {
    telemetry::limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader has all it wanted (`users list | head -1`): nothing to report.
        Err(e) if cli::output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.global.config.as_deref(), &cli.global.overrides())?;
    let ignored = oncall_relay::config::unknown_env_vars(oncall_relay::config::env_vars());
    if !matches!(cli.command, Command::Serve) {
        // `serve` sets up its own logging from the settings and warns there.
        telemetry::init_cli();
        cli::warn_ignored(&ignored);
    }
    match cli.command {
        Command::Serve => cli::serve::run(settings, &ignored).await,
        Command::Config => cli::config_show::run(&settings),
        Command::Users(cmd) => cli::users::run(settings, cmd).await,
        Command::Events(cmd) => cli::events::run(settings, cmd).await,
        Command::Devices(cmd) => cli::devices::run(settings, cmd).await,
        Command::Schedules(cmd) => cli::schedules::run(settings, cmd).await,
        Command::Notify(cmd) => cli::notify::run(settings, cmd).await,
        Command::CheckConfig => cli::check_config::run(&settings),
        Command::Templates(cmd) => cli::templates::run(&settings, cmd),
        Command::Integrations(cmd) => cli::integrations::run(settings, cmd).await,
    }
}
