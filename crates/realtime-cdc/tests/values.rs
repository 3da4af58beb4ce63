//! The values typed without the database equal what `to_jsonb('<text>'::type)` gives in the
//! pipeline's session (UTC), i.e. what upstream's `realtime.cast` returns.

use realtime_cdc::value::{native_jsonb, oid};
use realtime_testkit::Cluster;

#[tokio::test]
async fn native_typing_matches_the_database() {
    let db = Cluster::shared().create_database().await;
    let sql = db.connect().await;
    sql.batch_execute(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1",
    )
    .await
    .unwrap();
    let cases: &[(u32, &str, &[&str])] = &[
        (oid::BOOL, "boolean", &["t", "f"]),
        (oid::INT2, "smallint", &["0", "-32768", "32767"]),
        (oid::INT4, "integer", &["1", "-2147483648"]),
        (
            oid::INT8,
            "bigint",
            &["9223372036854775807", "-9223372036854775808"],
        ),
        (oid::OID, "oid", &["4294967295"]),
        (
            oid::NUMERIC,
            "numeric",
            &[
                "3.10",
                "0",
                "-0.000100",
                "123456789012345678901234567890.123456789",
            ],
        ),
        (
            oid::FLOAT8,
            "double precision",
            &[
                "1.5",
                "1e+20",
                "1e-05",
                "-1.25e-07",
                "123456789.123",
                "1.7976931348623157e+308",
                "0.1",
            ],
        ),
        (
            oid::FLOAT4,
            "real",
            &["1.5", "3.4028235e+38", "1e-10", "-2.5"],
        ),
        (
            oid::TEXT,
            "text",
            &[
                "hello",
                "quote \" backslash \\ tab \t nl \n",
                "ünïcödé ✓",
                "\u{1}\u{1f}",
            ],
        ),
        (oid::VARCHAR, "character varying", &["x"]),
        (oid::BPCHAR, "bpchar", &["ab ", "a"]),
        (oid::UUID, "uuid", &["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
        (oid::DATE, "date", &["2024-01-02", "0001-01-01"]),
        (
            oid::TIMESTAMP,
            "timestamp without time zone",
            &["2024-01-02 03:04:05.123456", "2024-01-02 03:04:05"],
        ),
        (
            oid::TIMESTAMPTZ,
            "timestamp with time zone",
            &[
                "2024-01-02 03:04:05.5+02",
                "2024-01-01 23:30:00-05:30",
                "2024-02-29 00:00:00+00",
                "1999-12-31 23:59:59.999999+14",
            ],
        ),
    ];
    for (type_oid, type_name, samples) in cases {
        for text in *samples {
            let native = native_jsonb(*type_oid, text)
                .unwrap_or_else(|| panic!("{type_name} {text:?} not typed natively"));
            let q = format!("select to_jsonb($1::text::{type_name})::text");
            let db_text: String = sql.query_one(&q, &[text]).await.unwrap().get(0);
            assert_eq!(native, db_text, "{type_name} {text:?}");
        }
    }
}
