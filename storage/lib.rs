//! kromosynth-cli genome databases.
