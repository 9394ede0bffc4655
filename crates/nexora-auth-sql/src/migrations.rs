//! The migration runner and the schema-version gate.

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, SqlStr, Transaction, Type,
};

use crate::{SetupError, trusted_sql};

/// A store's migrations and the statements that keep its migrations table, with the table
/// prefix spliced in. Built once per store; [`run`](Self::run) applies what a database lacks.
///
/// The store keeps its own table (`{prefix}auth_migrations`: version, description, applied
/// at), never sqlx's `_sqlx_migrations`, so the host's own `sqlx::migrate!` runs in the same
/// database undisturbed.
#[derive(Debug)]
pub struct Migrations {
    create_table: SqlStr,
    read_version: SqlStr,
    record: SqlStr,
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    version: i64,
    description: &'static str,
    sql: SqlStr,
}

impl Migrations {
    /// The statements that keep the migrations table: `create_table` creates it if missing,
    /// `read_version` reads the newest version recorded (`NULL` when none), `record` inserts a
    /// row binding the version, the description and the time applied, in that order.
    pub fn new(create_table: String, read_version: String, record: String) -> Self {
        Self {
            create_table: trusted_sql(create_table),
            read_version: trusted_sql(read_version),
            record: trusted_sql(record),
            steps: Vec::new(),
        }
    }

    /// Adds the migration to `version`: `sql`, one or more statements, run as one script.
    ///
    /// # Panics
    ///
    /// If `version` is not newer than the last step's: the list is the store's own constant
    /// text, so this is a mistake in the store crate, found by its first test.
    pub fn step(mut self, version: i64, description: &'static str, sql: String) -> Self {
        assert!(
            version > self.schema_version(),
            "migration {version} is not newer than {}",
            self.schema_version()
        );
        self.steps.push(Step {
            version,
            description,
            sql: trusted_sql(sql),
        });
        self
    }

    /// The newest version: the schema version the store writes and reads (0 with no steps).
    pub fn schema_version(&self) -> i64 {
        self.steps.last().map_or(0, |step| step.version)
    }

    /// Creates or upgrades the tables in `tx`, then commits it; running it again does nothing.
    ///
    /// The store opens `tx` holding whatever serialises concurrent runs (SQLite's
    /// `BEGIN IMMEDIATE`, a Postgres advisory lock), so every pending step and its record
    /// commit together or not at all. A database whose recorded version is newer than
    /// [`schema_version`](Self::schema_version) is refused with [`SetupError::SchemaTooNew`]
    /// and left untouched. `applied_at` is recorded with each step, in the dialect's
    /// representation of a time.
    pub async fn run<DB, T>(
        &self,
        mut tx: Transaction<'_, DB>,
        applied_at: T,
    ) -> Result<(), SetupError>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
        usize: ColumnIndex<DB::Row>,
        i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        T: for<'q> Encode<'q, DB> + Type<DB> + Clone,
    {
        let db = SetupError::database;
        sqlx::raw_sql(self.create_table.clone())
            .execute(&mut *tx)
            .await
            .map_err(db("create the migrations table"))?;
        let applied: Option<i64> = sqlx::query_scalar(self.read_version.clone())
            .fetch_one(&mut *tx)
            .await
            .map_err(db("read the schema version"))?;
        let applied = applied.unwrap_or(0);
        let known = self.schema_version();
        if applied > known {
            return Err(SetupError::SchemaTooNew {
                found: applied,
                known,
            });
        }
        for step in self.steps.iter().filter(|step| step.version > applied) {
            sqlx::raw_sql(step.sql.clone())
                .execute(&mut *tx)
                .await
                .map_err(db("apply a migration"))?;
            sqlx::query(self.record.clone())
                .bind(step.version)
                .bind(step.description)
                .bind(applied_at.clone())
                .execute(&mut *tx)
                .await
                .map_err(db("record a migration"))?;
        }
        tx.commit().await.map_err(db("commit the migration"))
    }
}
