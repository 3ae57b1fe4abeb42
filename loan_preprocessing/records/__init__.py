"""Decision records: every decision the service gives, kept in a database (SQLite
or PostgreSQL) before the applicant hears it; see docs/decision-records.md."""
