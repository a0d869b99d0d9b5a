namespace VirtioPanic.Transport.Mmio;

/// <summary>
/// The virtio-mmio version 2 register map (virtio 1.2 §4.2.2 "MMIO Device Register Layout"; Linux
/// <c>virtio_mmio.h</c>). Control registers are 32 bits wide and accessed with aligned 32-bit
/// accesses only; device-specific configuration starts at <see cref="Config"/>.
/// </summary>
/// <remarks>
/// <code>
/// 0x000 R  MagicValue 0x74726976 ("virt")   0x070 RW Status (0 resets)
/// 0x004 R  Version 2                        0x080 W  QueueDescLow     0x084 W QueueDescHigh
/// 0x008 R  DeviceID                         0x090 W  QueueDriverLow   0x094 W QueueDriverHigh
/// 0x00C R  VendorID                         0x0A0 W  QueueDeviceLow   0x0A4 W QueueDeviceHigh
/// 0x010 R  DeviceFeatures                   0x0AC W  SHMSel
/// 0x014 W  DeviceFeaturesSel                0x0B0 R  SHMLenLow  0x0B4 R SHMLenHigh   (all ones: no region)
/// 0x020 W  DriverFeatures                   0x0B8 R  SHMBaseLow 0x0BC R SHMBaseHigh  (all ones: no region)
/// 0x024 W  DriverFeaturesSel                0x0C0 RW QueueReset (VIRTIO_F_RING_RESET)
/// 0x030 W  QueueSel                         0x0FC R  ConfigGeneration (32 bits)
/// 0x034 R  QueueSizeMax (0: no such queue)  0x100 RW device-specific configuration
/// 0x038 W  QueueSize
/// 0x044 RW QueueReady (1 enables, 0 disables)
/// 0x050 W  QueueNotify (queue index)
/// 0x060 R  InterruptStatus (bit 0 used buffer, bit 1 configuration change)
/// 0x064 W  InterruptACK
/// </code>
/// </remarks>
public static class VirtioMmioRegisters
{
    /// <summary>MagicValue (R).</summary>
    public const int MagicValue = 0x000;

    /// <summary>Version (R): 2.</summary>
    public const int Version = 0x004;

    /// <summary>DeviceID (R): the virtio device ID.</summary>
    public const int DeviceId = 0x008;

    /// <summary>VendorID (R).</summary>
    public const int VendorId = 0x00C;

    /// <summary>DeviceFeatures (R).</summary>
    public const int DeviceFeatures = 0x010;

    /// <summary>DeviceFeaturesSel (W).</summary>
    public const int DeviceFeaturesSel = 0x014;

    /// <summary>DriverFeatures (W).</summary>
    public const int DriverFeatures = 0x020;

    /// <summary>DriverFeaturesSel (W).</summary>
    public const int DriverFeaturesSel = 0x024;

    /// <summary>QueueSel (W).</summary>
    public const int QueueSel = 0x030;

    /// <summary>QueueSizeMax (R); QueueNumMax before virtio 1.3.</summary>
    public const int QueueSizeMax = 0x034;

    /// <summary>QueueSize (W); QueueNum before virtio 1.3.</summary>
    public const int QueueSize = 0x038;

    /// <summary>QueueReady (RW).</summary>
    public const int QueueReady = 0x044;

    /// <summary>QueueNotify (W): the doorbell.</summary>
    public const int QueueNotify = 0x050;

    /// <summary>InterruptStatus (R).</summary>
    public const int InterruptStatus = 0x060;

    /// <summary>InterruptACK (W).</summary>
    public const int InterruptAck = 0x064;

    /// <summary>Status (RW).</summary>
    public const int Status = 0x070;

    /// <summary>QueueDescLow (W).</summary>
    public const int QueueDescLow = 0x080;

    /// <summary>QueueDescHigh (W).</summary>
    public const int QueueDescHigh = 0x084;

    /// <summary>QueueDriverLow (W).</summary>
    public const int QueueDriverLow = 0x090;

    /// <summary>QueueDriverHigh (W).</summary>
    public const int QueueDriverHigh = 0x094;

    /// <summary>QueueDeviceLow (W).</summary>
    public const int QueueDeviceLow = 0x0A0;

    /// <summary>QueueDeviceHigh (W).</summary>
    public const int QueueDeviceHigh = 0x0A4;

    /// <summary>SHMSel (W).</summary>
    public const int ShmSel = 0x0AC;

    /// <summary>SHMLenLow (R).</summary>
    public const int ShmLenLow = 0x0B0;

    /// <summary>SHMLenHigh (R).</summary>
    public const int ShmLenHigh = 0x0B4;

    /// <summary>SHMBaseLow (R).</summary>
    public const int ShmBaseLow = 0x0B8;

    /// <summary>SHMBaseHigh (R).</summary>
    public const int ShmBaseHigh = 0x0BC;

    /// <summary>QueueReset (RW).</summary>
    public const int QueueReset = 0x0C0;

    /// <summary>ConfigGeneration (R).</summary>
    public const int ConfigGeneration = 0x0FC;

    /// <summary>Start of the device-specific configuration.</summary>
    public const int Config = 0x100;

    /// <summary>The MagicValue: "virt" in little-endian.</summary>
    public const uint Magic = 0x7472_6976;

    /// <summary>InterruptStatus bit 0: used-buffer notification.</summary>
    public const uint InterruptUsedBuffer = 0x1;

    /// <summary>InterruptStatus bit 1: configuration change.</summary>
    public const uint InterruptConfigChange = 0x2;
}
