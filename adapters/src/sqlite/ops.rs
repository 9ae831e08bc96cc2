use super::SqliteSource;
