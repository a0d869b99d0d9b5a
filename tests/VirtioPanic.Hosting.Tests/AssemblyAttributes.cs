using System.Runtime.Versioning;

// The journal tests check POSIX file modes and mount a small tmpfs: Linux only, as the CI is.
[assembly: SupportedOSPlatform("linux")]
