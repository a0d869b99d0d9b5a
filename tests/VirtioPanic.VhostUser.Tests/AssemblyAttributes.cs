using System.Runtime.Versioning;

// vhost-user, memfd, eventfd and QEMU/KVM guests: these tests run on Linux only.
[assembly: SupportedOSPlatform("linux")]
