/** fleetctl devices: list, show, tag (If-Match), enroll, revoke, history. */
import { type EdgefleetClient, isApiError, ok } from '@edgefleet/client';
import { type Command, Option } from 'commander';
import { CliError, EXIT } from '../exit.ts';
import { ago, collect, fields, table } from '../output.ts';
import type { Run } from './run.ts';

const limitOption = () => new Option('--limit <n>', 'at most this many (default: all, page after page)').argParser(positive('--limit'));

export function positive(flag: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new CliError(EXIT.usage, `${flag} ${value}: give a whole number of 1 or more`);
    return n;
  };
}

/** `name@version` of each model a device reports, failed ones marked. */
function modelsOf(reported: { models: readonly { name: string; state: string; active?: { version: string } }[] } | null): string {
  if (!reported || reported.models.length === 0) return '-';
  return reported.models.map((m) => `${m.name}@${m.active?.version ?? '-'}${m.state === 'active' ? '' : ` (${m.state})`}`).join(', ');
}

/** Reads the device, changes its tags, writes them under If-Match; retried when someone else changed it meanwhile. */
async function retag(client: EdgefleetClient, id: string, change: (tags: string[]) => string[]) {
  for (let attempt = 0; ; attempt++) {
    const { data, response } = await client.api.GET('/v1/devices/{id}', { params: { path: { id } } });
    const etag = response.headers.get('etag') ?? '*';
    const tags = change([...(data?.tags ?? [])]);
    try {
      return await ok(client.api.PATCH('/v1/devices/{id}', { params: { path: { id } }, body: { tags }, headers: { 'if-match': etag } }));
    } catch (error) {
      if (attempt < 3 && isApiError(error, 'EF_PRECONDITION_FAILED')) continue;
      throw error;
    }
  }
}

export function registerDevices(program: Command, run: Run): void {
  const devices = program.command('devices').description('Devices: their models, tags, history; enrollment and revocation');

  devices
    .command('ls')
    .description('List devices (every page), by tag, status, presence and failure')
    .option('--tag <tag>', 'only devices with this tag, e.g. site=lyon')
    .addOption(new Option('--status <status>', 'active or revoked').choices(['active', 'revoked']))
    .option('--online', 'only online devices')
    .option('--offline', 'only offline devices')
    .option('--failing', 'only devices failing a model or an install they were asked for')
    .addOption(limitOption())
    .action(
      (
        options: { tag?: string; status?: 'active' | 'revoked'; online?: boolean; offline?: boolean; failing?: boolean; limit?: number },
        command: Command,
      ) =>
        run(command, async (ctx) => {
          if (options.online && options.offline) throw new CliError(EXIT.usage, '--online and --offline exclude each other');
          const client = await ctx.client();
          const query = {
            ...(options.tag ? { tag: options.tag } : {}),
            ...(options.status ? { status: options.status } : {}),
            ...(options.online ? { online: 'true' as const } : options.offline ? { online: 'false' as const } : {}),
            ...(options.failing ? { failing: 'true' as const } : {}),
            limit: String(Math.min(options.limit ?? 1000, 1000)),
          };
          const all = await collect(client.items('/v1/devices', { params: { query } }), options.limit);
          const c = ctx.out.colors;
          ctx.out.print(all, () =>
            table(
              ['ID', 'STATUS', 'ONLINE', 'MODELS', 'TAGS', 'LAST SEEN'],
              all.map((d) => [
                d.id,
                d.status === 'active' ? (d.failing ? c.red('failing') : 'active') : c.dim(d.status),
                d.online ? c.green('yes') : c.dim('no'),
                modelsOf(d.reported),
                d.tags.join(',') || '-',
                ago(d.lastSeenAt),
              ]),
            ),
          );
        }),
    );

  devices
    .command('show <id>')
    .description('One device: tags, presence, the models it runs and their last errors')
    .action((id: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const device = await ok(client.api.GET('/v1/devices/{id}', { params: { path: { id } } }));
        ctx.out.print(device, () => {
          const head = fields([
            ['id', device.id],
            ['status', device.status],
            ['online', device.online ? 'yes' : 'no'],
            ['failing', device.failing ? 'yes' : 'no'],
            ['tags', device.tags.join(', ') || '-'],
            ['agent', device.reported ? `${device.reported.agent.version} (${device.reported.agent.platform})` : '-'],
            ['created', device.createdAt],
            ['last seen', ago(device.lastSeenAt)],
          ]);
          const models = device.reported?.models ?? [];
          if (models.length === 0) return head;
          return `${head}\n\n${table(
            ['MODEL', 'STATE', 'ACTIVE', 'VARIANT', 'PROVIDER', 'SHADOW', 'PREVIOUS', 'LAST ERROR'],
            models.map((m) => [
              m.name,
              m.state,
              m.active?.version,
              m.active ? (m.active.variant ?? 'reference') : '-',
              m.active?.executionProvider,
              m.shadow ? `${m.shadow.version} (${Math.round(m.shadow.rate * 100)}% of inputs)` : '-',
              m.previous?.version,
              m.lastError ? `${m.lastError.code}: ${m.lastError.message.slice(0, 80)}` : '-',
            ]),
          )}`;
        });
      }),
    );

  devices
    .command('assign <id> <name@version>')
    .description('Set the version of a model one device runs, optionally with a candidate in shadow beside it (rollouts do this in stages)')
    .option('--shadow <version>', 'a candidate version to run in shadow: it sees a share of the live inputs and never answers')
    .option('--shadow-rate <share>', 'the share of inputs the shadow runs on, 0 to 1', '0.1')
    .option('--rollback', 'sign the change as a rollback (the version may be older than what runs)')
    .addHelpText('after', '\nExample:\n  fleetctl devices assign cam-0042 detector@2.1.0 --shadow 2.2.0 --shadow-rate 0.2\n')
    .action((id: string, ref: string, options: { shadow?: string; shadowRate: string; rollback?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        const at = ref.lastIndexOf('@');
        if (at < 1) throw new CliError(EXIT.usage, `${ref}: name the version, e.g. ${ref}@1.0.0`);
        const [name, version] = [ref.slice(0, at), ref.slice(at + 1)];
        const rate = Number(options.shadowRate);
        if (!(rate >= 0 && rate <= 1)) throw new CliError(EXIT.usage, `--shadow-rate ${options.shadowRate}: a share from 0 to 1`);
        const client = await ctx.client();
        const document = await ok(
          client.api.PUT('/v1/devices/{id}/desired/{model}', {
            params: { path: { id, model: name } },
            body: {
              version,
              ...(options.rollback ? { rollback: true } : {}),
              ...(options.shadow ? { shadow: { version: options.shadow, rate } } : {}),
            },
          }),
        );
        ctx.out.print(
          document,
          () =>
            `${ctx.out.colors.green('✓')} ${id} runs ${name}@${version}${options.shadow ? `, ${options.shadow} in shadow on ${Math.round(rate * 100)}% of its inputs` : ''} (desired state #${document.payload.sequence})`,
        );
      }),
    );

  devices
    .command('tag <id> [tags...]')
    .description('Add tags to a device (and --remove others); the next rollouts and drift passes see them')
    .option('--remove <tags...>', 'tags to take off')
    .option('--replace', 'set exactly the tags given (instead of adding them)')
    .addHelpText('after', '\nExample:\n  fleetctl devices tag cam-17 ring=canary --remove ring=stable')
    .action((id: string, tags: string[], options: { remove?: string[]; replace?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        if (tags.length === 0 && !options.remove && !options.replace) throw new CliError(EXIT.usage, 'give tags to add, or --remove TAG');
        const client = await ctx.client();
        const device = await retag(client, id, (current) => {
          const base = options.replace ? [] : current;
          const next = [...base, ...tags.filter((t) => !base.includes(t))];
          return next.filter((t) => !(options.remove ?? []).includes(t));
        });
        ctx.out.print(device, () => `${device.id}: ${device.tags.join(', ') || '(no tags)'}`);
      }),
    );

  devices
    .command('enroll [id]')
    .description('Create a device and print its credentials (the secret is shown once)')
    .option('--tag <tags...>', 'its tags')
    .addHelpText('after', '\nFor many devices, create an enrollment token instead: fleetctl tokens create --enrollment --uses 100')
    .action((id: string | undefined, options: { tag?: string[] }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const created = await ok(
          client.api.POST('/v1/devices', { body: { ...(id ? { id } : {}), ...(options.tag ? { tags: options.tag } : {}) } }),
        );
        ctx.out.print(created, () =>
          [
            fields([
              ['id', created.id],
              ['secret', created.secret],
              ['mqtt', created.mqtt.tcp],
              ['tags', created.tags.join(', ') || '-'],
            ]),
            '',
            'The secret is shown once. The device agent takes the id, the secret and the key set: fleetctl devices enroll ID -o json > device.json',
          ].join('\n'),
        );
      }),
    );

  devices
    .command('revoke <id>')
    .description('Revoke a device: disconnected now, refused from now on')
    .action((id: string, _options, command: Command) =>
      run(command, async (ctx) => {
        await ctx.confirm(`revoke device ${id}? it is disconnected at once and refused from then on`);
        const client = await ctx.client();
        const device = await ok(client.api.POST('/v1/devices/{id}/revoke', { params: { path: { id } } }));
        ctx.out.print(device, () => `${device.id}: revoked`);
      }),
    );

  devices
    .command('history <id>')
    .description('What happened on a device, newest first: installs, acceptance, failures, rollbacks')
    .option('--model <name>', 'only this model')
    .option('--kind <kind>', 'only this kind of event, e.g. install-failed')
    .addOption(limitOption().default(50, '50'))
    .action((id: string, options: { model?: string; kind?: string; limit: number }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const query = {
          ...(options.model ? { model: options.model } : {}),
          ...(options.kind ? { kind: options.kind as never } : {}),
          limit: String(Math.min(options.limit, 1000)),
        };
        const events = await collect(client.items('/v1/devices/{id}/history', { params: { path: { id }, query } }), options.limit);
        const c = ctx.out.colors;
        ctx.out.print(events, () =>
          table(
            ['AT', 'EVENT', 'MODEL', 'ROLLOUT', 'ERROR'],
            events.map((e) => [
              e.at,
              e.error ? c.red(e.kind) : e.kind,
              e.model ? `${e.model}@${e.version ?? '-'}` : '-',
              e.rolloutId,
              e.error ? `${e.error.code}: ${e.error.message.slice(0, 80)}` : '-',
            ]),
          ),
        );
      }),
    );
}
