namespace VirtioPanic.Transport.Pci;

/// <summary>
/// A queue's notification address (virtio 1.2 §4.1.4.4): a driver write of <see cref="Length"/>
/// bytes here kicks queue <see cref="QueueIndex"/>. A hypervisor may route these addresses on a
/// fast path straight to <see cref="VirtioPciFunction.NotifyQueue"/> (the value written is not
/// needed: each queue has its own address).
/// </summary>
/// <param name="Address">Guest-physical address.</param>
/// <param name="Length">Access width the driver uses (2 bytes).</param>
/// <param name="QueueIndex">The queue this doorbell kicks.</param>
public readonly record struct VirtioDoorbell(ulong Address, int Length, int QueueIndex);
