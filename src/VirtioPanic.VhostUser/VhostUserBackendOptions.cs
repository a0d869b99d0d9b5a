namespace VirtioPanic.VhostUser;

/// <summary>Settings of a <see cref="VhostUserBackend"/> beyond its device and socket.</summary>
public sealed class VhostUserBackendOptions
{
    /// <summary>
    /// Offer VIRTIO_F_RING_PACKED when the device does. Defaults to <see langword="false"/>:
    /// split rings only.
    /// </summary>
    /// <remarks>
    /// A packed ring's position travels in <c>SET_VRING_BASE</c> / <c>GET_VRING_BASE</c>: bits 0-14
    /// the next available index, bit 15 its wrap counter, bits 16-30 the next used index, bit 31
    /// its wrap counter (QEMU's encoding; a fresh ring is <c>0x80008000</c>). User-Mode Linux
    /// negotiates packed rings when offered but sends 0 (wrap counters clear) for a fresh ring,
    /// so its driver's descriptors are never seen as available: enable this only for front ends
    /// that send the wrap counters (QEMU).
    /// </remarks>
    public bool PackedRings { get; init; }

    /// <summary>
    /// Refuse guest memory whose file is not sealed against shrinking (<c>F_SEAL_SHRINK</c>).
    /// Defaults to <see langword="false"/>: such memory is accepted, with a warning once per connection.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The back end maps guest memory from the file descriptors of <c>SET_MEM_TABLE</c> and checks
    /// that every region lies inside its file. A front end that later truncates an unsealed file
    /// makes the back end's next access to the lost pages raise SIGBUS, which ends the process:
    /// nothing in a managed process can recover from that. A memfd sealed with
    /// <c>F_SEAL_SHRINK</c> cannot shrink; QEMU's <c>memory-backend-memfd</c> seals so by default
    /// (<c>seal=on</c>). <c>memory-backend-file</c> and User-Mode Linux's memory file are not
    /// sealed: set this to refuse them (the table is refused with a REPLY_ACK failure and a logged
    /// reason) when the front end is not trusted with the back end's life.
    /// </para>
    /// </remarks>
    public bool RequireSealedMemory { get; init; }

    /// <summary>
    /// How long a new connection may take to set itself up (send <c>SET_OWNER</c>, which every
    /// front end sends while it initialises) before it is closed. Defaults to 15 seconds.
    /// </summary>
    /// <remarks>
    /// vhost-user has one front end per socket, so a connection that never sets up would keep
    /// every other front end out. Once set up, a connection may stay idle indefinitely (QEMU waits
    /// for the guest driver before it starts the rings). While one connection is served, another
    /// connection attempt is closed at once with a logged reason rather than queued.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">Set to zero, a negative value, or more than a day.</exception>
    public TimeSpan SetupTimeout
    {
        get => _setupTimeout;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromDays(1));
            _setupTimeout = value;
        }
    }

    // How long a front end may leave a message incomplete, or a reply unread, before its
    // connection is dropped; shorter only in tests.
    internal TimeSpan IoTimeout { get; init; } = TimeSpan.FromSeconds(5);

    // The window of the log limits (VhostUserLogLimiter); shorter only in tests.
    internal TimeSpan LogWindow { get; init; } = TimeSpan.FromSeconds(10);

    private TimeSpan _setupTimeout = TimeSpan.FromSeconds(15);
}
