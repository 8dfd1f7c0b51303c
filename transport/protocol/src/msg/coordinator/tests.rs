//! Tests of the coordinator messages.

use super::super::testutil::round_trip;
use super::*;

#[test]
fn coordinator_messages_round_trip() {
    round_trip!(EnlistServerRequest {
        services: Services::MASTER,
        locator: "tcp:host=127.0.0.1,port=1",
        previous_id: ServerId::new(1, 2)
    });
    round_trip!(EnlistServerResponse {
        server_id: ServerId::new(4, 1)
    });
    // No round_trip!: the budget is optional (older servers), so one prefix is valid.
    let beat = HeartbeatRequest {
        server_id: ServerId::new(4, 1),
        budget_bytes: 1 << 30,
    };
    let buf = beat.to_vec();
    assert_eq!(HeartbeatRequest::decode(&buf).unwrap(), beat);
    assert_eq!(HeartbeatRequest::decode(&buf[..8]).unwrap().budget_bytes, 0);
    assert!(HeartbeatRequest::decode(&buf[..12]).is_err());
    round_trip!(GetServerListRequest {
        services: Services(0)
    });
    let list = GetServerListResponse {
        version: 3,
        servers: vec![ServerEntry {
            id: ServerId::new(1, 1),
            services: Services(3),
            status: ServerStatus::Crashed,
            locator: "tcp:host=a,port=2",
            budget_bytes: 1 << 30,
        }],
    };
    let buf = list.to_vec();
    assert_eq!(GetServerListResponse::decode(&buf).unwrap(), list);
    // An older coordinator's list (no budgets) decodes with budget 0; a cut one does not.
    let old = GetServerListResponse::decode(&buf[..buf.len() - 8]).unwrap();
    assert_eq!(old.servers[0].budget_bytes, 0);
    assert!(GetServerListResponse::decode(&buf[..buf.len() - 3]).is_err());
    // No round_trip!: the optional trailing backing makes one prefix valid (below).
    let plain = CreateTableRequest {
        name: "users",
        server_span: 3,
        backing: None,
    };
    assert_eq!(CreateTableRequest::decode(&plain.to_vec()).unwrap(), plain);
    // With a backing (an older client's request, without one, stays valid).
    let with = CreateTableRequest {
        name: "photos",
        server_span: 2,
        backing: Some(crate::msg::faas::TableBacking::new(
            "s3://b/p",
            crate::msg::faas::WritePolicy::WriteBack,
        )),
    };
    let buf = with.to_vec();
    assert_eq!(CreateTableRequest::decode(&buf).unwrap(), with);
    for cut in 1..buf.len() {
        let r = CreateTableRequest::decode(&buf[..cut]);
        // Only the cut right after the span decodes (as a table without a backing).
        if cut == 2 + 6 + 4 {
            assert_eq!(r.unwrap().backing, None);
        } else {
            assert!(r.is_err(), "prefix of {cut} bytes decoded");
        }
    }
    round_trip!(TableIdResponse { table_id: 7 });
    round_trip!(DropTableRequest(TableNameRequest { name: "t" }));
    round_trip!(GetTableIdRequest(TableNameRequest { name: "t" }));
    round_trip!(ListTablesRequest);
    round_trip!(ListTablesResponse {
        tables: vec![TableEntry {
            id: 1,
            name: "a",
            tablets: 2
        }]
    });
    round_trip!(GetTabletMapRequest { table_id: 0 });
    round_trip!(GetTabletMapResponse {
        version: 9,
        tablets: vec![TabletEntry {
            table_id: 1,
            start_hash: 0,
            end_hash: u64::MAX,
            owner: ServerId::new(2, 1),
            locator: "tcp:host=b,port=3",
            state: TabletState::Migrating
        }]
    });
    round_trip!(SplitTabletRequest {
        table_id: 1,
        split_hash: 1 << 63
    });
    round_trip!(MigrateTabletRequest {
        table_id: 1,
        start_hash: 0,
        end_hash: 5,
        target: ServerId::new(3, 1)
    });
    round_trip!(GetClientLeaseRequest { client_id: 4 });
    round_trip!(ReleaseClientLeaseRequest { client_id: 4 });
    round_trip!(CheckClientLeasesRequest {
        client_ids: vec![1, 2, 3]
    });
    round_trip!(CheckClientLeasesResponse {
        cluster_time: 9,
        expirations: vec![0, 10]
    });
    round_trip!(HeartbeatResponse {
        cluster_time: 77,
        lease_ms: 750
    });
    round_trip!(HintServerCrashedRequest {
        server: ServerId::new(2, 3)
    });
    round_trip!(ClientLeaseResponse {
        client_id: 11,
        lease: ClientLease {
            expiration: 30_500,
            timestamp: 500
        },
        term_ms: 30_000
    });
}

#[test]
fn bad_fields() {
    let mut buf = Vec::new();
    Writer::new(&mut buf).u32(8).u16(0).u64(0);
    assert!(matches!(
        EnlistServerRequest::decode(&buf),
        Err(MsgError::BadField {
            field: "services",
            ..
        })
    ));
    let mut buf = Vec::new();
    Writer::new(&mut buf).u16(2).raw(&[0xff, 0xfe]).u32(1);
    assert_eq!(
        CreateTableRequest::decode(&buf),
        Err(MsgError::NotUtf8 {
            field: "table name"
        })
    );
    let mut buf = Vec::new();
    Writer::new(&mut buf).u16(0).u32(1);
    assert!(CreateTableRequest::decode(&buf).is_err());
    let mut buf = Vec::new();
    Writer::new(&mut buf)
        .u64(1)
        .u32(1)
        .u64(1)
        .u64(0)
        .u64(u64::MAX)
        .u64(1)
        .u16(0)
        .u8(9);
    assert!(matches!(
        GetTabletMapResponse::decode(&buf),
        Err(MsgError::BadField { .. })
    ));
    let mut buf = Vec::new();
    Writer::new(&mut buf).u64(1).u32(u32::MAX);
    assert!(matches!(
        GetServerListResponse::decode(&buf),
        Err(MsgError::TooMany { .. })
    ));
}
