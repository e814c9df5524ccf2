//! What an upstream answer binds: the pure part of the resolver, tested without sockets.
//!
//! The wire format is `hickory-proto`'s (no hand-written parser): it refuses truncated input,
//! compression loops and oversized names. Only the answer to the question that was asked counts,
//! and CNAMEs are followed only within that one answer, from the question's name.

use std::{collections::HashSet, net::IpAddr};

use enforcer_common::names::MAX_ADDRS_PER_ANSWER;
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{RData, RecordType},
};

/// Longest CNAME chain followed within one answer.
const MAX_CNAME_HOPS: usize = 16;

/// Why an upstream answer is not relayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("malformed answer")]
    Malformed,
    #[error("the answer is not a response to the query (id or question differ)")]
    Mismatch,
}

/// A query a device sent, as far as the resolver needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: RecordType,
}

/// Parses a device's query: one question, a query (not a response).
///
/// # Errors
/// When it is no well-formed single-question query.
pub fn parse_query(bytes: &[u8]) -> Result<Question, AnswerError> {
    let m = Message::from_vec(bytes).map_err(|_| AnswerError::Malformed)?;
    if m.metadata.message_type != MessageType::Query || m.queries.len() != 1 {
        return Err(AnswerError::Malformed);
    }
    let q = &m.queries[0];
    Ok(Question {
        id: m.metadata.id,
        name: normal(&q.name().to_ascii()),
        qtype: q.query_type(),
    })
}

fn normal(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The addresses (with their record TTLs) that `answer` gives for `q`, following CNAMEs from the
/// question's name within the answer only; at most [`MAX_ADDRS_PER_ANSWER`].
///
/// # Errors
/// When the answer is malformed or answers another question.
pub fn addresses(q: &Question, answer: &[u8]) -> Result<Vec<(IpAddr, u32)>, AnswerError> {
    let m = Message::from_vec(answer).map_err(|_| AnswerError::Malformed)?;
    if m.metadata.id != q.id
        || m.metadata.message_type != MessageType::Response
        || m.queries.len() != 1
        || normal(&m.queries[0].name().to_ascii()) != q.name
        || m.queries[0].query_type() != q.qtype
    {
        return Err(AnswerError::Mismatch);
    }
    if m.metadata.response_code != ResponseCode::NoError {
        return Ok(Vec::new());
    }
    let mut names: HashSet<String> = HashSet::from([q.name.clone()]);
    // Each pass adds the targets of CNAMEs owned by a name already reached: a chain in any order.
    for _ in 0..MAX_CNAME_HOPS {
        let before = names.len();
        for r in &m.answers {
            if let RData::CNAME(target) = &r.data
                && names.contains(&normal(&r.name.to_ascii()))
            {
                names.insert(normal(&target.0.to_ascii()));
            }
        }
        if names.len() == before {
            break;
        }
    }
    let mut out = Vec::new();
    for r in &m.answers {
        if out.len() >= MAX_ADDRS_PER_ANSWER {
            break;
        }
        let addr = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        if names.contains(&normal(&r.name.to_ascii())) {
            out.push((addr, r.ttl));
        }
    }
    Ok(out)
}

/// A TTL clamped to `[min, max]` seconds.
#[must_use]
pub fn clamp_ttl(ttl: u32, min: u32, max: u32) -> u32 {
    ttl.clamp(min, max.max(min))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{
            Name, RData, Record, RecordType,
            rdata::{A, AAAA, CNAME},
        },
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    pub(crate) fn query(id: u16, qname: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(name(qname), qtype));
        m.to_vec().unwrap_or_else(|e| panic!("{e}"))
    }

    fn answer(id: u16, qname: &str, qtype: RecordType, records: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name(qname), qtype));
        m.add_answers(records);
        m.to_vec().unwrap_or_else(|e| panic!("{e}"))
    }

    fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
    }

    #[test]
    fn a_cname_chain_within_the_answer_is_followed_in_any_order() {
        let q = parse_query(&query(7, "Cloud.Example.", RecordType::A))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.name, "cloud.example");
        let bytes = answer(
            7,
            "cloud.example.",
            RecordType::A,
            vec![
                a("edge.cdn.example.", 20, [203, 0, 113, 10]),
                cname("lb.example.", "edge.cdn.example."),
                cname("cloud.example.", "lb.example."),
                a("elsewhere.example.", 20, [203, 0, 113, 99]),
            ],
        );
        let got = addresses(&q, &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, vec![(IpAddr::from([203, 0, 113, 10]), 20)]);
    }

    #[test]
    fn aaaa_records_bind_too() {
        let q = parse_query(&query(9, "cloud.example.", RecordType::AAAA))
            .unwrap_or_else(|e| panic!("{e}"));
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 0x10);
        let bytes = answer(
            9,
            "cloud.example.",
            RecordType::AAAA,
            vec![Record::from_rdata(
                name("cloud.example."),
                0,
                RData::AAAA(AAAA(ip)),
            )],
        );
        assert_eq!(addresses(&q, &bytes), Ok(vec![(IpAddr::V6(ip), 0)]));
    }

    #[test]
    fn at_most_100_addresses_bind_from_one_answer() {
        let q = parse_query(&query(1, "many.example.", RecordType::A))
            .unwrap_or_else(|e| panic!("{e}"));
        let records = (0..150u8)
            .map(|i| a("many.example.", 60, [10, 9, i / 100, i % 100]))
            .collect();
        let bytes = answer(1, "many.example.", RecordType::A, records);
        assert_eq!(addresses(&q, &bytes).map(|v| v.len()), Ok(100));
    }

    #[test]
    fn another_question_or_id_binds_nothing() {
        let q = parse_query(&query(1, "cloud.example.", RecordType::A))
            .unwrap_or_else(|e| panic!("{e}"));
        let other = answer(
            1,
            "evil.example.",
            RecordType::A,
            vec![a("cloud.example.", 60, [1, 2, 3, 4])],
        );
        assert_eq!(addresses(&q, &other), Err(AnswerError::Mismatch));
        let late = answer(
            2,
            "cloud.example.",
            RecordType::A,
            vec![a("cloud.example.", 60, [1, 2, 3, 4])],
        );
        assert_eq!(addresses(&q, &late), Err(AnswerError::Mismatch));
    }

    #[test]
    fn truncated_garbage_and_compression_loops_are_refused() {
        let q = parse_query(&query(1, "cloud.example.", RecordType::A))
            .unwrap_or_else(|e| panic!("{e}"));
        let good = answer(
            1,
            "cloud.example.",
            RecordType::A,
            vec![a("cloud.example.", 60, [1, 2, 3, 4])],
        );
        for cut in [0, 5, 12, 20, good.len() - 1] {
            assert!(addresses(&q, &good[..cut]).is_err(), "cut at {cut}");
        }
        // Header (1 question) then a name that is a compression pointer to itself (offset 12).
        let mut looping = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        looping.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(addresses(&q, &looping).is_err());
        assert!(parse_query(&looping).is_err());
        assert!(parse_query(&[0xff; 3]).is_err());
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(clamp_ttl(0, 30, 3600), 30);
        assert_eq!(clamp_ttl(86_400, 30, 3600), 3600);
        assert_eq!(clamp_ttl(300, 30, 3600), 300);
    }
}
