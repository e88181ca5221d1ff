//! `config/config.example.yml` documents every option under its full path.
