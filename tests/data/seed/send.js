ws.send(
    JSON.stringify({
        method: 'send',
        
        // * - обязательные поля
        argument: {
            // *Логин1
            login: 'Agent',
            
            // *Логин2
            login2: 'Иванов И.И.',
            
            // *Пароль пользователя закодированный в SHA1 (формат фабулы)
            sha1: 'a9de7c...',
            
            // Ожидать ответа от АТС или возвращать ответ сразу
            // Либо можно указать fields.actionId
            callbackAwait: 1,
            
            // *Строки сообщения передаваемые в АТС
            fields: {
                action: 'ping',
                
                // Если указан actionId, то callbackAwait = 1 автоматически
                actionId: Math.random()
            }
        }
    })
);
