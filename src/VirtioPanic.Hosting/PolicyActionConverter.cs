using System.ComponentModel;
using System.Globalization;

namespace VirtioPanic.Hosting;

// Lets configuration say "coredump-destroy" or "inject-nmi" (libvirt's spelling) as well as the
// member name; anything else fails with the list of valid values (the configuration binder adds
// the key's path to the message).
internal sealed class PolicyActionConverter<T> : TypeConverter
    where T : struct, Enum
{
    public override bool CanConvertFrom(ITypeDescriptorContext? context, Type sourceType) =>
        sourceType == typeof(string) || base.CanConvertFrom(context, sourceType);

    public override object? ConvertFrom(ITypeDescriptorContext? context, CultureInfo? culture, object value)
    {
        if (value is string text)
        {
            if (PolicyNames.TryParse(text, out T parsed))
            {
                return parsed;
            }

            throw new FormatException($"'{text}' is not a valid {typeof(T).Name}; use one of: {PolicyNames.List<T>()}.");
        }

        return base.ConvertFrom(context, culture, value);
    }

    public override object? ConvertTo(ITypeDescriptorContext? context, CultureInfo? culture, object? value, Type destinationType)
    {
        if (destinationType == typeof(string) && value is T action)
        {
            return PolicyNames.Of(action);
        }

        return base.ConvertTo(context, culture, value, destinationType);
    }
}
