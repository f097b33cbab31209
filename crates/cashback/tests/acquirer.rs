//! End-to-end tests of the acquirer (RTD) API on the real binary, on SQLite and PostgreSQL:
//! salt, public key, SAS, upload of plain and OpenPGP-encrypted files with their reports, the
//! file-level refusals (name, ABI, size, empty, wrong key, repeated name, bad SAS) and the
//! hashed-PAN list.
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test acquirer`

mod common;

use std::io::Read;
use std::sync::Arc;

use common::{ApiKey, Backend, DEV_SALT, Opts, Resp, Server, TestDb, adult, new_hpan};
use reqwest::Method;
use serde_json::json;
use time::OffsetDateTime;

const ABI: &str = "12345";

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// An E1 row: a payment of `cents` on `hpan` at `at`, transaction id `id`.
fn row(id: &str, hpan: &str, at: OffsetDateTime, cents: u64) -> String {
    format!("{ABI};00;01;{hpan};{};{id};ISS{id};;{cents};978;ACQ1;MERCH1;TERM1;40236010;5411", rfc3339(at))
}

fn file_name(n: u32) -> String {
    format!("CSTAR.{ABI}.TRNLOG.20261120.101010.{n:03}.csv")
}

async fn rtd(srv: &Server, method: Method, path: &str, key: &ApiKey) -> Resp {
    srv.send(srv.req(method, path).header("Ocp-Apim-Subscription-Key", &key.key)).await
}

/// Ask a SAS and upload `body` as `name`.
async fn upload(srv: &Server, key: &ApiKey, name: &str, body: Vec<u8>) -> Resp {
    let sas = rtd(srv, Method::POST, "/rtd/csv-transaction/rtd/sas", key).await.json_with(201);
    let container = sas["authorizedContainer"].as_str().unwrap();
    let path = format!("/pagopastorage/{container}/{name}?{}", sas["sas"].as_str().unwrap());
    srv.send(
        srv.req(Method::PUT, &path)
            .header("Ocp-Apim-Subscription-Key", &key.key)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body),
    )
    .await
}

async fn scenario(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let today = OffsetDateTime::now_utc().date();
    // A period around today, so transactions of today count.
    let (start, end) = (today - time::Duration::days(30), today + time::Duration::days(30));
    db.admin(&["period-set", "--id", "90", "--start", &start.to_string(), "--end", &end.to_string()]).await;
    let config = db.dir.path().join("cashback.toml");
    std::fs::write(&config, "[acquirer]\nupload_bytes_max = 100000\n").unwrap();
    let srv = Server::start(db.clone(), Opts::dev().arg("--config").arg(config.display().to_string())).await;
    let acq = srv.credential("acquirer", ABI).await;
    let other = srv.credential("acquirer", "54321").await;
    let issuer = srv.credential("issuer", "BANCA1").await;

    // Salt and public key: acquirers only.
    assert_eq!(rtd(&srv, Method::GET, "/rtd/payment-instrument-manager/salt", &acq).await.expect(200).body, DEV_SALT);
    rtd(&srv, Method::GET, "/rtd/payment-instrument-manager/salt", &issuer).await.problem(403, "issuer API");
    srv.send(srv.req(Method::GET, "/rtd/payment-instrument-manager/salt")).await.problem(401, "API key");
    let armored = rtd(&srv, Method::GET, "/rtd/csv-transaction/publickey", &acq).await.expect(200).body.clone();
    assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"), "{armored}");
    let recipient = cashback_pgp::RecipientKey::from_armored(&armored).unwrap();

    // A citizen with a card enrolled now; another card never enrolled.
    let cf = adult("ACQ");
    let token = srv.login(&cf).await;
    srv.io(Method::PUT, "/bpd/io/citizen", &token, None).await.expect(200);
    let (enrolled, stranger) = (new_hpan("acq-enrolled"), new_hpan("acq-stranger"));
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{enrolled}"), &token, None).await.expect(200);
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let rows = [
        row("T1", &enrolled, at, 2_500),
        row("T2", &stranger, at, 1_000),
        row("T3", &enrolled, at, 1_000).replace(";978;", ";EUR;"),
        row("T4", &enrolled, at + time::Duration::seconds(1), 990),
    ];
    let plain = rows.join("\n") + "\n";

    // OpenPGP upload: decrypted, ingested, reported.
    let mut encrypted = Vec::new();
    recipient.encrypt(plain.as_bytes(), &mut encrypted).unwrap();
    let name1 = format!("{}.pgp", file_name(1));
    let report = upload(&srv, &acq, &name1, encrypted.clone()).await.json_with(201);
    assert_eq!(report["status"], "DONE", "{report}");
    assert_eq!(
        (&report["accepted"], &report["ineligible"], &report["rejected"], &report["duplicates"]),
        (&json!(2), &json!(1), &json!(1), &json!(0)),
        "{report}"
    );
    assert_eq!(report["sha256"], sha256_hex_bytes(&encrypted));
    // The same name again: 409, nothing counted twice.
    upload(&srv, &acq, &name1, encrypted.clone()).await.problem(409, "already");
    // The same rows under another name: all duplicates.
    let again = upload(&srv, &acq, &file_name(2), plain.clone().into_bytes()).await.json_with(201);
    assert_eq!((&again["accepted"], &again["duplicates"], &again["rejected"]), (&json!(0), &json!(3), &json!(1)));

    // File-level refusals.
    upload(&srv, &acq, "CSTAR.12345.TRNLOG.20260230.101010.001.csv", plain.clone().into_bytes())
        .await
        .problem(400, "file name");
    upload(&srv, &acq, "CSTAR.54321.TRNLOG.20261120.101010.001.csv", plain.clone().into_bytes())
        .await
        .problem(403, "54321");
    upload(&srv, &acq, &file_name(3), Vec::new()).await.problem(400, "empty");
    upload(&srv, &acq, &file_name(4), vec![b'x'; 100_001]).await.problem(413, "limit");
    let stranger_key = cashback_pgp::PlatformKey::generate("someone else").unwrap();
    let wrong = cashback_pgp::RecipientKey::from_armored(&stranger_key.public_key_armored()).unwrap();
    let mut misencrypted = Vec::new();
    wrong.encrypt(plain.as_bytes(), &mut misencrypted).unwrap();
    let name5 = format!("{}.pgp", file_name(5));
    upload(&srv, &acq, &name5, misencrypted).await.problem(422, "public key");
    // A bad SAS, another key's container.
    let sas = rtd(&srv, Method::POST, "/rtd/csv-transaction/rtd/sas", &acq).await.json_with(201);
    let container = sas["authorizedContainer"].as_str().unwrap().to_owned();
    assert!(container.starts_with("rtd-transactions-") && container.len() == 17 + 44, "{container}");
    let tampered = sas["sas"].as_str().unwrap().replace("sig=", "sig=0");
    let put = |key: &ApiKey, path: String| {
        srv.req(Method::PUT, &path).header("Ocp-Apim-Subscription-Key", &key.key).body(plain.clone())
    };
    srv.send(put(&acq, format!("/pagopastorage/{container}/{}?{tampered}", file_name(6)))).await.problem(403, "sas");
    srv.send(put(&acq, format!("/pagopastorage/{container}/{}", file_name(6)))).await.problem(403, "sas");
    srv.send(put(&other, format!("/pagopastorage/{container}/{}?{}", file_name(6), sas["sas"].as_str().unwrap())))
        .await
        .problem(403, "container");
    rtd(&srv, Method::POST, "/rtd/csv-transaction/ade/sas", &acq).await.problem(404, "rtd");

    // Reports: the list (own files only, newest first) and one file with its rejected lines.
    let list = rtd(&srv, Method::GET, "/rtd/file-reporter/v2/file-report", &acq).await.json_with(200);
    let names: Vec<&str> =
        list["filesRecentlyUploaded"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&name1.as_str()) && names.contains(&name5.as_str()), "{list}");
    let failed =
        list["filesRecentlyUploaded"].as_array().unwrap().iter().find(|f| f["name"] == name5.as_str()).unwrap();
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("public key"), "{failed}");
    let none = rtd(&srv, Method::GET, "/rtd/file-reporter/v2/file-report", &other).await.json_with(200);
    assert_eq!(none["filesRecentlyUploaded"], json!([]));
    let one = rtd(&srv, Method::GET, &format!("/rtd/file-reporter/files/{name1}"), &acq).await.json_with(200);
    assert_eq!(one["rejections"], json!([{"line": 3, "field": "currency", "reason": one["rejections"][0]["reason"]}]));
    assert!(one["rejections"][0]["reason"].as_str().unwrap().contains("978"), "{one}");
    rtd(&srv, Method::GET, &format!("/rtd/file-reporter/files/{name1}"), &other).await.problem(403, "12345");
    rtd(&srv, Method::GET, &format!("/rtd/file-reporter/files/{}", file_name(9)), &acq).await.expect(404);

    // Hashed-PAN list: the enrolled card only, checksum header = SHA-256 of the zip.
    let list = hashed_pans(&srv, &acq).await;
    assert_eq!(list, vec![enrolled.clone()]);
    // The list is not per acquirer, but it is for acquirers only.
    rtd(&srv, Method::GET, "/rtd/payment-instrument-manager/hashed-pans", &issuer).await.expect(403);
    drop(srv);
    db.cleanup().await;
}

fn sha256_hex_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(b))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn hashed_pans(srv: &Server, key: &ApiKey) -> Vec<String> {
    let resp = srv
        .req(Method::GET, "/rtd/payment-instrument-manager/hashed-pans")
        .header("Ocp-Apim-Subscription-Key", &key.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let sum = resp.headers()["x-ms-meta-sha256"].to_str().unwrap().to_owned();
    assert!(resp.headers().contains_key("last-modified"));
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(sum, sha256_hex_bytes(&bytes));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(zip.len(), 1);
    let mut entry = zip.by_name("hashedPans.csv").unwrap();
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    text.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_api_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_api_on_postgres() {
    scenario(Backend::Postgres).await;
}
