//! Interoperability of the Mobility Header code with independent implementations: tshark
//! decodes what hagent builds (BU, and the BA exactly as the daemon sends it, with its type 2
//! routing header), and hagent parses what scapy builds.

use std::{net::Ipv6Addr, process::Command};

use ha_common::mh::{self, BaFields, BuFields, Message, MobilityHeader, MobilityOption};
use hagent::mobility::{ba_packet, ipv6_header};
use tests::TempDir;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A pcap file of raw IPv6 packets (LINKTYPE_IPV6 = 229).
fn pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 229] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    for (i, p) in packets.iter().enumerate() {
        for v in [i as u32, 0, p.len() as u32, p.len() as u32] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(p);
    }
    f
}

#[test]
fn tshark_decodes_what_hagent_builds() -> anyhow::Result<()> {
    if Command::new("tshark").arg("-v").output().is_err() {
        anyhow::bail!(
            "tshark_decodes_what_hagent_builds was not run: tshark not installed (cargo xtask setup installs it)"
        );
    }
    let (ha, hoa, coa) = (
        a("2001:db8:bee5::c001:babe"),
        a("2001:db8:bee5::dead:face"),
        a("2001:db8:f00d::dead:face"),
    );

    // A BU exactly as hagent's mobile node sends it (Destination Options with the HoA, then
    // the MH), plus one with an Alternate Care-of Address option built with the codec.
    let bu = hagent::mobility::bu_packet(hoa, coa, ha, 4242, 150)?;
    let mut mhbuf = [0u8; 64];
    let n = mh::build_binding_update(
        &mut mhbuf,
        &hoa.octets(),
        &ha.octets(),
        &BuFields {
            sequence: 4243,
            flags: mh::BU_FLAG_A | mh::BU_FLAG_H,
            lifetime_units: 150,
        },
        &[MobilityOption::AlternateCareOf(coa.octets())],
    )
    .unwrap();
    let mut dst_opts = [0u8; 24];
    mh::build_hao_dest_opts(&mut dst_opts, mh::IPPROTO_MH, &hoa.octets()).unwrap();
    let mut bu_alt = ipv6_header(mh::IPPROTO_DSTOPTS, 64, coa, ha, 24 + n).to_vec();
    bu_alt.extend_from_slice(&dst_opts);
    bu_alt.extend_from_slice(&mhbuf[..n]);

    // The BA exactly as the daemon sends it.
    let ba = ba_packet(
        ha,
        hoa,
        coa,
        &BaFields {
            status: 135,
            flags: 0,
            sequence: 4241,
            lifetime_units: 0,
        },
        None,
    )?;
    let ok = ba_packet(
        ha,
        hoa,
        coa,
        &BaFields {
            status: 0,
            flags: 0,
            sequence: 4242,
            lifetime_units: 150,
        },
        Some(75),
    )?;

    let dir = TempDir::new("tshark")?;
    let file = dir.join("mh.pcap");
    std::fs::write(&file, pcap(&[bu, ba, ok, bu_alt]))?;
    let rows = tests::tshark_fields(
        &file,
        None,
        &[
            "mip6.mhtype",
            "mip6.bu.seqnr",
            "mip6.bu.a_flag",
            "mip6.bu.h_flag",
            "mip6.bu.lifetime",
            "ipv6.opt.mipv6.home_address",
            "mip6.acoa.acoa",
            "mip6.ba.status",
            "mip6.ba.seqnr",
            "mip6.ba.lifetime",
            "ipv6.routing.type",
            "ipv6.routing.segleft",
            "ipv6.routing.mipv6.home_address",
            "mip6.bra.interval",
        ],
    )?;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let bu = &rows[0];
    assert_eq!(bu[0], "5", "MH type BU: {bu:?}");
    assert_eq!(bu[1], "4242");
    assert!(bu[2] == "1" || bu[2] == "True", "A flag: {bu:?}");
    assert!(bu[3] == "1" || bu[3] == "True", "H flag: {bu:?}");
    assert_eq!(bu[4], "150");
    assert_eq!(bu[5], hoa.to_string());
    let alt = &rows[3];
    assert_eq!(
        (alt[1].as_str(), alt[6].as_str()),
        ("4243", coa.to_string().as_str()),
        "{alt:?}"
    );
    let ba = &rows[1];
    assert_eq!(
        (
            ba[0].as_str(),
            ba[7].as_str(),
            ba[8].as_str(),
            ba[9].as_str()
        ),
        ("6", "135", "4241", "0"),
        "{ba:?}"
    );
    assert_eq!(
        (ba[10].as_str(), ba[11].as_str(), ba[12].as_str()),
        ("2", "1", hoa.to_string().as_str()),
        "RH2: {ba:?}"
    );
    let ok = &rows[2];
    assert_eq!(
        (ok[7].as_str(), ok[9].as_str(), ok[13].as_str()),
        ("0", "150", "75"),
        "{ok:?}"
    );
    Ok(())
}

#[test]
fn hagent_parses_what_scapy_builds() -> anyhow::Result<()> {
    let script = r#"
from scapy.all import raw
from scapy.layers.inet6 import MIP6MH_BU, MIP6MH_BA, MIP6OptAltCoA, MIP6OptBRAdvice
bu = MIP6MH_BU(seq=77, flags="AH", mhtime=30, options=[MIP6OptAltCoA(acoa="2001:db8:f00d::1")])
ba = MIP6MH_BA(status=132, seq=78, mhtime=0)
print(raw(bu).hex()); print(raw(ba).hex())
"#;
    let out = match Command::new("/usr/bin/python3")
        .args(["-c", script])
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            anyhow::bail!(
                "hagent_parses_what_scapy_builds was not run: /usr/bin/python3 with scapy missing (cargo xtask setup installs python3-scapy)"
            );
        }
    };
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<Vec<u8>> = text
        .lines()
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    let bu = MobilityHeader::parse(&lines[0]).map_err(|e| anyhow::anyhow!("{e}"))?;
    match bu.message {
        Message::BindingUpdate(b) => {
            assert_eq!((b.sequence, b.lifetime_units), (77, 30));
            assert!(b.ack_requested() && b.home_registration());
            let opts: Vec<_> = b
                .options
                .iter()
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert!(
                opts.contains(&MobilityOption::AlternateCareOf(
                    a("2001:db8:f00d::1").octets()
                )),
                "{opts:?}"
            );
        }
        m => panic!("{m:?}"),
    }
    match MobilityHeader::parse(&lines[1])
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .message
    {
        Message::BindingAck(b) => {
            assert_eq!((b.status, b.sequence, b.lifetime_units), (132, 78, 0))
        }
        m => panic!("{m:?}"),
    }
    Ok(())
}
