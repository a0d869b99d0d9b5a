namespace VirtioPanic.VhostUser;

/// <summary>Settings of a <see cref="VhostUserBackend"/> beyond its device and socket.</summary>
public sealed class VhostUserBackendOptions
{
    // Device-type feature bits (virtio 1.2 §2.2, §6): 0 to 23 and 50 to 127; the rest are the
    // transport's and the ring's, which a front end always negotiates itself.
    internal const ulong DeviceTypeBits = 0x0000_0000_00ff_ffffUL | 0xfffc_0000_0000_0000UL;

    /// <summary>
    /// Device-type feature bits (0-23 and 50-63) the back end treats as negotiated although the
    /// front end never acknowledges them. <b>For carrier testing only.</b>
    /// </summary>
    /// <remarks>
    /// <para>Defaults to 0: only what the front end acknowledges with <c>SET_FEATURES</c> is negotiated.</para>
    /// <para>
    /// Some VMMs can carry a device only on a stub of another device type that forwards no
    /// device-type feature bit (QEMU 7.2's <c>vhost-user-gpio-pci</c> presents virtio ID 41 and
    /// only clears bits from its own offer). When a guest driver built for that carrier treats the
    /// same bits as negotiated, agreed out of band, set them here: they are ORed into the features
    /// given to the device (<see cref="Virtio.Device.IVirtioDevice.AcceptFeatures"/> and the
    /// activation context's negotiated features), and the back end logs once per connection that
    /// it did so. Never set this for a front end that negotiates the device's features itself.
    /// </para>
    /// <para>Every bit must be a device-type bit the device offers
    /// (<see cref="Virtio.Device.IVirtioDevice.DeviceFeatures"/>); the back end's constructor
    /// throws <see cref="ArgumentException"/> otherwise.</para>
    /// </remarks>
    public ulong ImpliedDeviceFeatures { get; init; }
}
