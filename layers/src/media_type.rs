//! The media types rbuild reads and writes (OCI image spec, Docker schema2, and rbuild's own).
//!
//! Kept as an enum so that a media type never travels as a bare string past the edge; an unknown
//! type is preserved as [`MediaType::Other`] so that foreign descriptors round-trip unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A media type of a descriptor, manifest or blob.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MediaType {
    OciImageIndex,
    OciImageManifest,
    OciImageConfig,
    OciLayerTar,
    OciLayerGzip,
    OciLayerZstd,
    OciEmptyJson,
    DockerManifestList,
    DockerManifest,
    DockerImageConfig,
    DockerLayerGzip,
    DockerLayerTar,
    /// rbuild's build-cache map (see docs/cache-format.md).
    RbuildCacheConfig,
    /// Anything else, kept verbatim.
    Other(String),
}

impl MediaType {
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::OciImageIndex => "application/vnd.oci.image.index.v1+json",
            MediaType::OciImageManifest => "application/vnd.oci.image.manifest.v1+json",
            MediaType::OciImageConfig => "application/vnd.oci.image.config.v1+json",
            MediaType::OciLayerTar => "application/vnd.oci.image.layer.v1.tar",
            MediaType::OciLayerGzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            MediaType::OciLayerZstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            MediaType::OciEmptyJson => "application/vnd.oci.empty.v1+json",
            MediaType::DockerManifestList => {
                "application/vnd.docker.distribution.manifest.list.v2+json"
            }
            MediaType::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
            MediaType::DockerImageConfig => "application/vnd.docker.container.image.v1+json",
            MediaType::DockerLayerGzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            MediaType::DockerLayerTar => "application/vnd.docker.image.rootfs.diff.tar",
            MediaType::RbuildCacheConfig => "application/vnd.rbuild.cache.config.v1+json",
            MediaType::Other(s) => s,
        }
    }

    /// Whether this is a layer media type rbuild can unpack, and with which compression.
    pub fn layer_compression(&self) -> Option<Compression> {
        match self {
            MediaType::OciLayerTar | MediaType::DockerLayerTar => Some(Compression::None),
            MediaType::OciLayerGzip | MediaType::DockerLayerGzip => Some(Compression::Gzip),
            MediaType::OciLayerZstd => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Whether this names an image index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(
            self,
            MediaType::OciImageIndex | MediaType::DockerManifestList
        )
    }

    /// Whether this names a single-platform image manifest.
    pub fn is_manifest(&self) -> bool {
        matches!(
            self,
            MediaType::OciImageManifest | MediaType::DockerManifest
        )
    }
}

impl FromStr for MediaType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KNOWN: [MediaType; 13] = [
            MediaType::OciImageIndex,
            MediaType::OciImageManifest,
            MediaType::OciImageConfig,
            MediaType::OciLayerTar,
            MediaType::OciLayerGzip,
            MediaType::OciLayerZstd,
            MediaType::OciEmptyJson,
            MediaType::DockerManifestList,
            MediaType::DockerManifest,
            MediaType::DockerImageConfig,
            MediaType::DockerLayerGzip,
            MediaType::DockerLayerTar,
            MediaType::RbuildCacheConfig,
        ];
        Ok(KNOWN
            .into_iter()
            .find(|m| m.as_str() == s)
            .unwrap_or_else(|| MediaType::Other(s.to_string())))
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.parse::<MediaType>() {
            Ok(m) => m,
            Err(never) => match never {},
        })
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_layer_media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::OciLayerTar,
            Compression::Gzip => MediaType::OciLayerGzip,
            Compression::Zstd => MediaType::OciLayerZstd,
        }
    }

    /// The Docker schema2 layer media type, where one exists (Docker has none for zstd).
    pub fn docker_layer_media_type(self) -> Option<MediaType> {
        match self {
            Compression::None => Some(MediaType::DockerLayerTar),
            Compression::Gzip => Some(MediaType::DockerLayerGzip),
            Compression::Zstd => None,
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "uncompressed" | "none" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression {other:?}: use gzip, zstd or uncompressed"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_round_trip() {
        for m in [
            MediaType::OciImageManifest,
            MediaType::DockerLayerGzip,
            MediaType::RbuildCacheConfig,
        ] {
            assert_eq!(m.as_str().parse::<MediaType>().unwrap(), m);
        }
        assert_eq!(
            "text/plain".parse::<MediaType>().unwrap(),
            MediaType::Other("text/plain".into())
        );
    }
}
