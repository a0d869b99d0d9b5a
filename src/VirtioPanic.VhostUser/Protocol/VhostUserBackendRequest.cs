namespace VirtioPanic.VhostUser.Protocol;

// Back-end → front-end request codes, sent on the channel set up by SET_BACKEND_REQ_FD
// (vhost-user.rst, "Back-end message types").
internal enum VhostUserBackendRequest : uint
{
    IotlbMsg = 1,
    ConfigChangeMsg = 2,
    VringHostNotifierMsg = 3,
}
