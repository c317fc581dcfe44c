//! The catalogue of Cloud Run regions that v1 `locations.list` answers, whatever a project
//! runs where.
//!
//! Source: Google's "Cloud Run locations" page (cloud.google.com/run/docs/locations),
//! Tier 1 and Tier 2 regions, with the city each is in. The real list grows over time;
//! a region a seed names that is not below is served too.

/// `(region, city)`, as the locations page lists them (Tier 1 first, then Tier 2).
pub const CATALOGUE: &[(&str, &str)] = &[
    // Tier 1.
    ("asia-east1", "Taiwan"),
    ("asia-northeast1", "Tokyo"),
    ("asia-northeast2", "Osaka"),
    ("europe-north1", "Finland"),
    ("europe-southwest1", "Madrid"),
    ("europe-west1", "Belgium"),
    ("europe-west4", "Netherlands"),
    ("europe-west8", "Milan"),
    ("europe-west9", "Paris"),
    ("me-west1", "Tel Aviv"),
    ("us-central1", "Iowa"),
    ("us-east1", "South Carolina"),
    ("us-east4", "Northern Virginia"),
    ("us-east5", "Columbus"),
    ("us-south1", "Dallas"),
    ("us-west1", "Oregon"),
    // Tier 2.
    ("africa-south1", "Johannesburg"),
    ("asia-east2", "Hong Kong"),
    ("asia-northeast3", "Seoul"),
    ("asia-southeast1", "Singapore"),
    ("asia-southeast2", "Jakarta"),
    ("asia-south1", "Mumbai"),
    ("asia-south2", "Delhi"),
    ("australia-southeast1", "Sydney"),
    ("australia-southeast2", "Melbourne"),
    ("europe-central2", "Warsaw"),
    ("europe-west10", "Berlin"),
    ("europe-west12", "Turin"),
    ("europe-west2", "London"),
    ("europe-west3", "Frankfurt"),
    ("europe-west6", "Zurich"),
    ("me-central1", "Doha"),
    ("me-central2", "Dammam"),
    ("northamerica-northeast1", "Montréal"),
    ("northamerica-northeast2", "Toronto"),
    ("southamerica-east1", "São Paulo"),
    ("southamerica-west1", "Santiago"),
    ("us-west2", "Los Angeles"),
    ("us-west3", "Salt Lake City"),
    ("us-west4", "Las Vegas"),
];

/// Whether `region` is a Cloud Run region of the catalogue.
pub fn is_catalogued(region: &str) -> bool {
    CATALOGUE.iter().any(|(r, _)| *r == region)
}

/// The city a region is in (`displayName` of its location); the region itself when it is
/// not in the catalogue.
pub fn display_name(region: &str) -> &str {
    CATALOGUE
        .iter()
        .find(|(r, _)| *r == region)
        .map_or(region, |(_, city)| city)
}

/// Whether `region` has the shape of a Google Cloud region name: `area-direction<N>`
/// (`us-central1`, `northamerica-northeast2`).
pub fn is_region_name(region: &str) -> bool {
    let mut parts = region.splitn(2, '-');
    let (Some(area), Some(rest)) = (parts.next(), parts.next()) else {
        return false;
    };
    let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && !letters.is_empty()
        && letters.len() < rest.len()
        && letters.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_the_forty_documented_regions_without_duplicates() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|(r, _)| *r).collect();
        assert_eq!(names.len(), 40);
        assert!(names.iter().all(|r| is_region_name(r)), "{names:?}");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 40);
        assert_eq!(display_name("us-central1"), "Iowa");
        assert_eq!(display_name("mars-north1"), "mars-north1");
    }
}
