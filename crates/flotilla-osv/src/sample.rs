//! The real OSV sample shipped in this crate (`tests/data/osv`; sources and licences in its
//! README), embedded so that the demo's fleet and the assessment benchmark have advisories
//! to import without network access: (path under the sample, record text).

pub const RECORDS: &[(&str, &str)] = &[
    ("almalinux/ALSA-2022_1988.json", include_str!("../tests/data/osv/almalinux/ALSA-2022_1988.json")),
    ("almalinux/ALSA-2022_5099.json", include_str!("../tests/data/osv/almalinux/ALSA-2022_5099.json")),
    ("almalinux/ALSA-2022_5527.json", include_str!("../tests/data/osv/almalinux/ALSA-2022_5527.json")),
    ("almalinux/ALSA-2022_6224.json", include_str!("../tests/data/osv/almalinux/ALSA-2022_6224.json")),
    ("almalinux/ALSA-2023_0284.json", include_str!("../tests/data/osv/almalinux/ALSA-2023_0284.json")),
    ("almalinux/ALSA-2023_2645.json", include_str!("../tests/data/osv/almalinux/ALSA-2023_2645.json")),
    ("almalinux/ALSA-2023_5453.json", include_str!("../tests/data/osv/almalinux/ALSA-2023_5453.json")),
    ("almalinux/ALSA-2023_5711.json", include_str!("../tests/data/osv/almalinux/ALSA-2023_5711.json")),
    ("almalinux/ALSA-2024_0001.json", include_str!("../tests/data/osv/almalinux/ALSA-2024_0001.json")),
    ("almalinux/ALSA-2025_3261.json", include_str!("../tests/data/osv/almalinux/ALSA-2025_3261.json")),
    ("alpine/ALPINE-CVE-2025-26519.json", include_str!("../tests/data/osv/alpine/ALPINE-CVE-2025-26519.json")),
    ("alpine/CVE-2022-27449.json", include_str!("../tests/data/osv/alpine/CVE-2022-27449.json")),
    ("debian/DLA-3008-1.json", include_str!("../tests/data/osv/debian/DLA-3008-1.json")),
    ("debian/DLA-3012-1.json", include_str!("../tests/data/osv/debian/DLA-3012-1.json")),
    ("debian/DLA-3022-1.json", include_str!("../tests/data/osv/debian/DLA-3022-1.json")),
    ("debian/DLA-3051-1.json", include_str!("../tests/data/osv/debian/DLA-3051-1.json")),
    ("debian/DSA-3029-1.json", include_str!("../tests/data/osv/debian/DSA-3029-1.json")),
    ("ubuntu/UBUNTU-CVE-2016-2781.json", include_str!("../tests/data/osv/ubuntu/UBUNTU-CVE-2016-2781.json")),
    ("ubuntu/UBUNTU-CVE-2021-3156.json", include_str!("../tests/data/osv/ubuntu/UBUNTU-CVE-2021-3156.json")),
    ("ubuntu/UBUNTU-CVE-2022-0778.json", include_str!("../tests/data/osv/ubuntu/UBUNTU-CVE-2022-0778.json")),
    ("ubuntu/UBUNTU-CVE-2024-6387.json", include_str!("../tests/data/osv/ubuntu/UBUNTU-CVE-2024-6387.json")),
    ("ubuntu/UBUNTU-CVE-2025-38094.json", include_str!("../tests/data/osv/ubuntu/UBUNTU-CVE-2025-38094.json")),
    ("ubuntu/USN-6859-1.json", include_str!("../tests/data/osv/ubuntu/USN-6859-1.json")),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_sample_record_parses() {
        for (path, text) in super::RECORDS {
            assert!(crate::parse_record(text).is_ok(), "{path} does not parse");
        }
    }
}
