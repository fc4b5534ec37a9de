"""The CLI's command modules; each exports `COMMANDS`, which `cli.main` adds to the root group."""
